"""Small input-validation helpers shared by the package (internal).

Every public module validates at its boundary and raises ``ValueError`` with a message that names the
argument, what was expected and what was received, e.g. ``x: expected shape (B, T, 8), got (4, 10, 7)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def fmt_shape(shape: Sequence[int | str]) -> str:
    """Format a shape like ``(B, T, 8)``; symbolic dims stay as letters."""
    inner = ", ".join(str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def check_tensor(name: str, x: object, *, floating: bool = True) -> Tensor:
    """Raise if ``x`` is not a tensor (of a floating dtype when ``floating``)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_shape(
    name: str, x: object, expected: Sequence[int | str | None], *, floating: bool = True
) -> Tensor:
    """Check rank and the given dims of ``x``.

    ``expected`` holds an int for a fixed size, or a letter / ``None`` for a free dim,
    e.g. ``("B", "n", 64)``.
    """
    t = check_tensor(name, x, floating=floating)
    want = fmt_shape([("?" if e is None else e) for e in expected])
    if t.dim() != len(expected):
        raise ValueError(
            f"{name}: expected a {len(expected)}-d tensor of shape {want}, got shape {tuple(t.shape)}"
        )
    for got, exp in zip(t.shape, expected, strict=True):
        if isinstance(exp, int) and got != exp:
            raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
    return t


def check_positive_int(name: str, value: object) -> int:
    """Raise unless ``value`` is an int >= 1 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def check_k_active(k_active: object, n_modules: int) -> int:
    """Raise unless ``k_active`` is an int in [1, n_modules] (bools rejected): how many modules win a step."""
    if isinstance(k_active, bool) or not isinstance(k_active, int) or not 1 <= k_active <= n_modules:
        raise ValueError(f"k_active: expected an int in [1, n_modules={n_modules}], got {k_active!r}")
    return k_active


def check_finite_float(name: str, value: object) -> float:
    """A real number (int or float, not bool) that is finite; returned as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite float, got {value!r}")
    return float(value)


def check_probability(name: str, value: object) -> float:
    """Raise unless ``value`` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1), got {value!r}")
    return float(value)


def check_mask(name: str, mask: object, shape: Sequence[int]) -> Tensor:
    """Raise unless ``mask`` is a bool tensor broadcastable to ``shape``."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name}: expected a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: expected dtype torch.bool, got {mask.dtype}")
    try:
        torch.broadcast_shapes(tuple(mask.shape), tuple(shape))
    except RuntimeError:
        raise ValueError(
            f"{name}: expected a shape broadcastable to {tuple(shape)}, got {tuple(mask.shape)}"
        ) from None
    return mask


def check_input_slots(name: str, x: object, d_in: int) -> Tensor:
    """``x`` as input slots (B, m, d_in); a single input vector (B, d_in) becomes one slot (B, 1, d_in)."""
    x = check_tensor(name, x)
    if x.dim() not in (2, 3) or x.shape[-1] != d_in:
        raise ValueError(f"{name}: expected shape (B, {d_in}) or (B, m, {d_in}), got {tuple(x.shape)}")
    return x.unsqueeze(1) if x.dim() == 2 else x


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype ``torch.autocast`` casts to on ``device_type`` when it is enabled there, else None."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except RuntimeError:  # a device type autocast does not know (e.g. meta)
        return None
    return None


def check_like(name: str, x: Tensor, like: Tensor, what: str = "the model's parameters") -> Tensor:
    """Raise unless ``x`` is on ``like``'s device and has its dtype (or autocast's, while it is enabled).

    Metadata only (no host sync), so it is cheap enough for every call. Under ``torch.autocast`` on the
    parameters' device the inputs may also come in the autocast dtype (e.g. bf16 activations of an encoder
    that ran under autocast): the matmuls run in that dtype anyway.
    """
    if x.device != like.device:
        raise ValueError(f"{name}: expected device {like.device} ({what}), got {x.device}")
    if x.dtype != like.dtype:
        amp = autocast_dtype(like.device.type)
        if x.dtype != amp:
            extra = f" or {amp} (autocast)" if amp is not None else ""
            raise ValueError(f"{name}: expected dtype {like.dtype} ({what}){extra}, got {x.dtype}")
    return x


def check_batch(name: str, x: Tensor) -> Tensor:
    """Raise unless the batch (dim 0) of ``x`` holds at least one example."""
    if x.dim() == 0 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected a batch of at least 1 (B >= 1), got shape {tuple(x.shape)}")
    return x


def check_finite(*named: tuple[str, Tensor | None]) -> None:
    """Raise unless every given CPU tensor holds only finite values; one pass over them, no device sync.

    Only tensors in CPU memory are inspected. On an accelerator, reading the answer back is a host sync:
    the CPU would wait for the device at every call (every training batch), queueing no work ahead, and a
    sync inside a CUDA-graph capture aborts the capture. There the values go unchecked at the boundary; the
    experiments' training loop finds a NaN or infinite loss or parameter where it appears (``fit`` stops with
    ``TrainingDiverged``), and a run on the CPU checks every call.

    Args:
        named: ``(name, tensor)`` pairs; a None tensor, or one outside CPU memory, is skipped.
    """
    tensors = [(n, t) for n, t in named if t is not None and t.device.type == "cpu"]
    if not tensors:
        return
    ok = torch.isfinite(tensors[0][1]).all()
    for _, t in tensors[1:]:
        ok = ok & torch.isfinite(t).all()
    if bool(ok):
        return
    for n, t in tensors:  # the failure path: say which tensor and where
        bad = ~torch.isfinite(t)
        count = int(bad.sum())
        if count:
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{n}: expected finite values, got {count} NaN or infinite value(s) (the first at index "
                f"{first}: {t[first].item()})"
            )
