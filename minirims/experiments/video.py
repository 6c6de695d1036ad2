"""Video prediction around a recurrent core: conv encoder -> RIM or LSTM -> deconv decoder.

The bouncing-balls experiment predicts the next frame of a video. A frame (1, H, W) is encoded to a vector by
a small conv net, the recurrent core (:class:`~minirims.model.RIM` or :class:`~minirims.model.LSTMBaseline`)
updates its state with it, and a deconv net decodes the core's output into the *logits* of the next frame.
Training scores every predicted frame by per-pixel binary cross-entropy, either teacher-forced (the core
always sees the true frames, :func:`next_frame_loss`) or on the model's own rollout (:func:`rollout_loss`);
sigmoid(logits) are the predicted pixel probabilities. The encoder/decoder follow the paper's setting
(4x4 convolutions with stride 2 and ELU; channels 16-32-64 at 64x64). Their conv layers keep weights and
activations channels-last (NHWC): the encoder/decoder are most of a video training step (each fed-back frame
goes through both alone), and oneDNN's convolutions on CPU (cuDNN's on a GPU) run faster on NHWC tensors.
Same function, same parameters: only the memory layout differs.

:func:`rollout` is the test: give the model ``n_given`` true frames, then let it run on its own predictions
(the probabilities are fed back as the next input) for ``n_future`` frames, and score every predicted frame.

Shapes: B batch, T time, H = W frame size, d_e encoder output size, n modules, d_h hidden size per module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minirims._validate import check_positive_int, check_tensor
from minirims.model import Trace

__all__ = [
    "FEEDBACK",
    "FrameDecoder",
    "FrameEncoder",
    "FramePredictor",
    "Rollout",
    "next_frame_loss",
    "rollout",
    "rollout_loss",
    "soft_f1",
]


def _he_init(module: nn.Module) -> None:
    """He (Kaiming) normal init for the conv / linear layers of an ELU stack, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


def _check_frame(frame_size: object, channels: object) -> tuple[int, tuple[int, ...]]:
    """``(frame_size, channels)``: positive channel counts, and a frame side that the ``len(channels)``
    stride-2 layers halve exactly."""
    ok = isinstance(channels, (tuple, list)) and len(channels) >= 1
    ok = ok and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    if not ok:
        raise ValueError(f"channels: expected a non-empty tuple of positive ints, got {channels!r}")
    factor = 2 ** len(channels)
    ok = isinstance(frame_size, int) and not isinstance(frame_size, bool) and frame_size >= factor
    if not ok or frame_size % factor:
        raise ValueError(f"frame_size: expected a positive multiple of {factor}, got {frame_size!r}")
    return frame_size, tuple(channels)


class FrameEncoder(nn.Module):
    """Frames -> vectors: ``len(channels)`` convs (4x4, stride 2, ELU), then a linear layer and ELU.

    With ``slots``, the last feature map is not flattened into one vector: each of its positions becomes a
    slot (its features plus a learned position embedding, through a shared linear layer and ELU), so that a
    RIM's input attention can choose *where* in the frame a module reads.

    Shapes: (B, 1, H, W) -> (B, d_e), or (B, m, d_e) with ``slots`` (m = (H/2**L)^2 positions);
    H = W = ``frame_size``, a multiple of 2**len(channels).
    """

    def __init__(
        self,
        frame_size: int = 64,
        d_out: int = 512,
        channels: tuple[int, ...] = (16, 32, 64),
        slots: bool = False,
    ):
        super().__init__()
        self.frame_size, channels = _check_frame(frame_size, channels)
        self.d_out = check_positive_int("d_out", d_out)
        if slots not in (True, False):
            raise ValueError(f"slots: expected True or False, got {slots!r}")
        self.slots = bool(slots)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((1, *channels[:-1]), channels, strict=False):
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.ELU()]
        self.convs = nn.Sequential(*layers)
        side = frame_size // 2 ** len(channels)
        self.n_slots = side * side if slots else 1
        if slots:  # one vector per position of the last feature map: its features + where it is
            self.position = nn.Parameter(torch.randn(side * side, channels[-1]) * 0.1)
            self.fc = nn.Sequential(nn.Linear(channels[-1], d_out), nn.ELU())
        else:
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1] * side * side, d_out), nn.ELU())
        _he_init(self)
        self.convs.to(memory_format=torch.channels_last)  # channels-last: see the module docstring

    def forward(self, frames: Tensor) -> Tensor:
        """(B, 1, H, W) -> (B, d_e), or with ``slots`` (B, m, d_e): one slot per feature-map position."""
        features = self.convs(frames.contiguous(memory_format=torch.channels_last))
        if not self.slots:
            return self.fc(features)
        return self.fc(features.flatten(2).transpose(1, 2) + self.position)


class FrameDecoder(nn.Module):
    """Vectors -> frame logits: a linear layer to (C, H/2**L, W/2**L), then L transposed 4x4 convs, stride 2.

    The last layer's bias starts at ``out_bias``, the log-odds of a mostly black frame (-2.5: ~8% white
    pixels). Starting from the prior skips a long plateau in which the network only learns the mean frame
    (with a zero bias, several hundred steps on 32x32 balls).

    Shapes: (B, d_in) -> (B, 1, H, W) logits (no sigmoid: use BCE with logits).
    """

    def __init__(
        self,
        d_in: int,
        frame_size: int = 64,
        channels: tuple[int, ...] = (16, 32, 64),
        out_bias: float = -2.5,
    ):
        super().__init__()
        self.frame_size, channels = _check_frame(frame_size, channels)
        self.d_in = check_positive_int("d_in", d_in)
        self.side = frame_size // 2 ** len(channels)
        self.top = channels[-1]
        self.fc = nn.Sequential(nn.Linear(d_in, self.top * self.side * self.side), nn.ELU())
        layers: list[nn.Module] = []
        ups = (*reversed(channels), 1)
        for i, (c_in, c_out) in enumerate(zip(ups[:-1], ups[1:], strict=False)):
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if i < len(channels) - 1:
                layers.append(nn.ELU())
        self.deconvs = nn.Sequential(*layers)
        _he_init(self)
        with torch.no_grad():
            layers[-1].bias.fill_(float(out_bias))
        self.deconvs.to(memory_format=torch.channels_last)  # channels-last: see the module docstring

    def forward(self, z: Tensor) -> Tensor:
        """(B, d_in) -> (B, 1, H, W) logits."""
        x = self.fc(z).view(-1, self.top, self.side, self.side).contiguous(memory_format=torch.channels_last)
        return self.deconvs(x).contiguous()


class FramePredictor(nn.Module):
    """Next-frame predictor: encoder -> recurrent ``core`` -> decoder.

    Args:
        core: a :class:`RIM` or :class:`LSTMBaseline` (anything with ``d_in``, ``d_out`` and
            ``forward(x (B, T, d_in), state, trace) -> (out (B, T, d_out), state, trace)``).
        frame_size: H = W.
        channels: encoder conv channels (the decoder mirrors them).
        slots: the encoder gives one input slot per position of its last feature map (B, T, m, d_in)
            instead of one vector (a RIM reads them through its input attention; an LSTM cannot).

    ``forward(frames)`` returns, at step t, the logits of frame t+1 given frames 0..t.
    """

    def __init__(
        self,
        core: nn.Module,
        frame_size: int = 64,
        channels: tuple[int, ...] = (16, 32, 64),
        slots: bool = False,
    ):
        super().__init__()
        if not isinstance(core, nn.Module) or not hasattr(core, "d_in") or not hasattr(core, "d_out"):
            raise ValueError(f"core: expected a RIM or LSTMBaseline module, got {type(core).__name__}")
        self.core = core
        self.frame_size = frame_size
        self.encoder = FrameEncoder(frame_size, core.d_in, channels, slots=slots)
        self.decoder = FrameDecoder(core.d_out, frame_size, channels)

    def check_frames(self, frames: object, name: str = "frames") -> Tensor:
        """Raise unless ``frames`` is a float tensor (B, T, 1, H, W) with H = W = frame_size."""
        check_tensor(name, frames)
        s = self.frame_size
        if frames.dim() != 5 or tuple(frames.shape[2:]) != (1, s, s) or frames.shape[1] < 1:
            raise ValueError(
                f"{name}: expected shape (B, T, 1, {s}, {s}) with T >= 1, got {tuple(frames.shape)}"
            )
        return frames

    def forward(
        self, frames: Tensor, state: Any = None, trace: bool = False
    ) -> tuple[Tensor, Any, Trace | None]:
        """frames (B, T, 1, H, W) in [0, 1] -> (logits of frames 1..T, state, Trace or None)."""
        self.check_frames(frames)
        b, t = frames.shape[:2]
        z = self.encoder(frames.reshape(b * t, *frames.shape[2:]))  # all frames in one batch
        z = z.view(b, t, self.encoder.n_slots, -1) if self.encoder.slots else z.view(b, t, -1)
        out, state, record = self.core(z, state, trace=trace)
        logits = self.decoder(out.reshape(b * t, -1)).view(frames.shape)
        return logits, state, record


def next_frame_loss(model: FramePredictor, frames: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Teacher-forced next-frame loss: predict frames 1..T-1 from frames 0..T-2.

    Args:
        model: a :class:`FramePredictor`.
        frames: (B, T, 1, H, W) in [0, 1], T >= 2.

    Returns:
        (mean per-pixel BCE, {"bce_frame": BCE per frame summed over pixels}) -- both detached-free scalars;
        the metric is detached.
    """
    model.check_frames(frames)
    if frames.shape[1] < 2:
        raise ValueError(f"frames: expected at least 2 frames (T >= 2), got shape {tuple(frames.shape)}")
    logits, _, _ = model(frames[:, :-1])
    loss = F.binary_cross_entropy_with_logits(logits.float(), frames[:, 1:].float())
    pixels = frames.shape[-1] * frames.shape[-2]
    return loss, {"bce_frame": loss.detach() * pixels}


#: what a rollout feeds back: the predicted probabilities, or them thresholded at 0.5 (a sharp frame)
FEEDBACK = ("probs", "binary")


def _read_then_feed_back(
    model: FramePredictor,
    given: Tensor,
    n_more: int,
    detach: bool = False,
    trace: bool = False,
    feedback: str = "probs",
) -> tuple[list[Tensor], list[Trace | None]]:
    """Read the true frames ``given`` (B, G, 1, H, W) in one call, then feed the predicted frame back
    ``n_more`` times, one frame per call (what :func:`rollout` and :func:`rollout_loss` share): its
    probabilities, or with ``feedback="binary"`` the pixels above 0.5 (no gradient flows through those).

    Returns the logits of every call ((B, G, 1, H, W), then n_more of (B, 1, 1, H, W)) and their traces.
    """
    if feedback not in FEEDBACK:
        raise ValueError(f"feedback: expected one of {FEEDBACK}, got {feedback!r}")
    logits, state, record = model(given, trace=trace)
    steps, records = [logits], [record]
    for _ in range(n_more):
        fed = torch.sigmoid(steps[-1][:, -1:])
        if feedback == "binary":
            fed = (fed > 0.5).to(fed.dtype)
        logits, state, record = model(fed.detach() if detach else fed, state, trace=trace)
        steps.append(logits)
        records.append(record)
    return steps, records


def soft_f1(logits: Tensor, target: Tensor) -> Tensor:
    """Foreground F1 with probabilities in place of thresholded pixels, per frame: a differentiable stand-in
    for :func:`minirims.experiments.tracking.foreground_f1`.

    Args:
        logits, target: (..., H, W); target in [0, 1].

    Returns:
        (...,) 2 sum(p t) / (sum(p) + sum(t)), with p = sigmoid(logits) (1 where both are empty).
    """
    p = torch.sigmoid(logits)
    tp = (p * target).sum(dim=(-2, -1))
    total = p.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
    return torch.where(total > 1e-6, 2 * tp / total.clamp(min=1e-6), torch.ones_like(tp))


def rollout_loss(
    model: FramePredictor,
    frames: Tensor,
    n_given: int,
    feedback_grad: bool = True,
    sharpen: float = 0.0,
    feedback: str = "probs",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Next-frame loss on a training video whose second part the model must roll out itself.

    The model reads true frames 0..n_given-1 (teacher forcing), then its own predicted probabilities for
    the rest, exactly as in :func:`rollout`, and every predicted frame 1..T-1 is scored (mean per-pixel BCE).
    Trained only with teacher forcing, a model never sees its own blurry predictions, and at test time they
    push it off the data it knows: its rollouts blow up within a few frames. Training on the rollout
    removes that mismatch (the cost: the last T - n_given frames run one step at a time).

    Args:
        model: a :class:`FramePredictor`.
        frames: (B, T, 1, H, W) in [0, 1], T >= 2.
        n_given: true frames read, in [1, T - 1]; ``T - 1`` is plain teacher forcing
            (:func:`next_frame_loss`).
        feedback_grad: let the gradient flow through the fed-back predictions (backprop through the
            rollout); False detaches them.
        sharpen: >= 0; adds ``sharpen * (1 - soft F1)`` (:func:`soft_f1`, mean over predicted frames) to the
            loss. BCE alone makes a blur the best guess under doubt; the F1 term pays only for foreground
            drawn where the balls are, so it asks for sharp balls.
        feedback: what is fed back after the given frames (:data:`FEEDBACK`).

    Returns:
        (mean per-pixel BCE (+ the sharpening term), {"bce_frame": BCE per frame summed over pixels,
        "bce_rollout": the same over frames n_given..T-1, the ones :func:`rollout` scores (when
        n_given < T - 1), "soft_f1" (when ``sharpen`` > 0)}); metrics detached.
    """
    model.check_frames(frames)
    t = frames.shape[1]
    if t < 2:
        raise ValueError(f"frames: expected at least 2 frames (T >= 2), got shape {tuple(frames.shape)}")
    if isinstance(n_given, bool) or not isinstance(n_given, int) or not 1 <= n_given <= t - 1:
        raise ValueError(
            f"n_given: expected an int in [1, {t - 1}] (T - 1 = teacher forcing), got {n_given!r}"
        )
    if isinstance(sharpen, bool) or not isinstance(sharpen, (int, float)) or not 0 <= sharpen < float("inf"):
        raise ValueError(f"sharpen: expected a finite number >= 0, got {sharpen!r}")
    steps, _ = _read_then_feed_back(
        model, frames[:, :n_given], t - 1 - n_given, detach=not feedback_grad, feedback=feedback
    )
    logits = torch.cat(steps, dim=1).float()
    bce = F.binary_cross_entropy_with_logits(logits, frames[:, 1:].float(), reduction="none")
    per_frame = bce.sum(dim=(2, 3, 4))  # (B, T - 1)
    pixels = frames.shape[-1] * frames.shape[-2]
    loss = per_frame.mean() / pixels
    metrics = {"bce_frame": per_frame.detach().mean()}
    if sharpen > 0:
        f1 = soft_f1(logits[:, :, 0], frames[:, 1:, 0].float()).mean()
        loss = loss + sharpen * (1 - f1)
        metrics["soft_f1"] = f1.detach()
    if t - 1 > n_given:  # frames n_given..T-1, as scored by rollout(n_given, T - n_given)
        metrics["bce_rollout"] = per_frame[:, n_given - 1 :].detach().mean()
    return loss, metrics


class Rollout(NamedTuple):
    """What :func:`rollout` returns.

    predictions: (B, n_future, 1, H, W) predicted probabilities of frames n_given .. n_given+n_future-1.
    targets: (B, n_future, 1, H, W) the true frames.
    bce: (B, n_future) BCE of each predicted frame, summed over its pixels.
    trace: Trace of the core over all n_given + n_future - 1 steps (RIM only, when asked), else None.
    """

    predictions: Tensor
    targets: Tensor
    bce: Tensor
    trace: Trace | None


@torch.no_grad()
def rollout(
    model: FramePredictor,
    frames: Tensor,
    n_given: int = 15,
    n_future: int = 15,
    trace: bool = False,
    feedback: str = "probs",
) -> Rollout:
    """Give ``n_given`` true frames, then predict ``n_future`` frames, each from the model's own predictions.

    Step t < n_given reads true frame t; afterwards the model reads its previous predicted probabilities.
    Runs in eval mode (dropout off) without gradients, and restores the model's training flag.

    Args:
        model: a :class:`FramePredictor`.
        frames: (B, T, 1, H, W) with T >= n_given + n_future.
        n_given, n_future: positive ints.
        trace: record the core's Trace (module masks and attention) at every step.
        feedback: what the model reads after the given frames (:data:`FEEDBACK`): its predicted
            probabilities, or them thresholded at 0.5.

    Returns:
        :class:`Rollout` (predictions, targets, per-frame BCE (B, n_future), trace).
    """
    check_positive_int("n_given", n_given)
    check_positive_int("n_future", n_future)
    model.check_frames(frames)
    if frames.shape[1] < n_given + n_future:
        raise ValueError(
            f"frames: expected at least n_given + n_future = {n_given + n_future} frames, "
            f"got shape {tuple(frames.shape)}"
        )
    was_training = model.training
    model.eval()
    try:
        steps, records = _read_then_feed_back(
            model, frames[:, :n_given], n_future - 1, trace=trace, feedback=feedback
        )
    finally:
        model.train(was_training)
    logits = torch.cat([steps[0][:, -1:], *steps[1:]], dim=1).float()  # the frames after the given ones
    targets = frames[:, n_given : n_given + n_future]
    bce = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none").sum(dim=(2, 3, 4))
    full_trace = None
    if trace and records[0] is not None:
        full_trace = Trace(*(torch.cat(parts, dim=1) for parts in zip(*records, strict=False)))
    return Rollout(torch.sigmoid(logits), targets, bce, full_trace)
