"""Checks for notebook 05: one RIM step, the RIM over a sequence, and folding W_v into the cells' weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minirims.cell import RIMCell, RIMState
from minirims.course.checks._core import (
    ATOL,
    RTOL,
    ExerciseFailure,
    _call,
    _close,
    _compare,
    _compare_mask,
    _compare_states,
    _expect_tuple,
    _first_match,
    _randn,
    _require_callable,
    _seeded,
    compare,
    passed,
)
from minirims.model import RIM

__all__ = ["check_rim_step", "check_run_rim", "check_fold_value_weights"]

SEED = 3141


# ----------------------------------------------------------------------------------------------------------
# one step of the cell, and a sequence

_SMALL_CELL = dict(input_d_k=4, input_d_v=5, comm_heads=2, comm_d_k=3, comm_d_v=3, dropout=0.0)


def _comm_first(cell: RIMCell, x: Tensor, state: RIMState) -> tuple[Tensor, Tensor]:
    """(h, c) of the step done in the wrong order: competition -> communication -> dynamics -> update."""
    comp = cell.input_attention(x, state.h)
    h_comm, _ = cell.communication(state.h, comp.mask)
    h_tilde, c_tilde = cell.rnn(comp.read, (h_comm, state.c))
    active = comp.mask.unsqueeze(-1)
    return torch.where(active, h_tilde, state.h), torch.where(active, c_tilde, state.c)


_ORDER_HINT = (
    "you let the modules communicate before the dynamics; the order is competition -> independent dynamics "
    "-> communication: step the LSTMs first (h~, c~ = cell.rnn(read, (h, c))), then let the active modules "
    "read each other's new states (cell.communication(h~, mask))"
)


def _rim_step_hint(h: Any, h_tilde: Tensor, mask: Tensor, old: Tensor, comm_first: Tensor) -> str:
    return _first_match(
        h,
        [
            (
                "active modules take the state after communication, cell.communication(h~, mask), not h~ "
                "straight from the recurrent cell",
                lambda: torch.where(mask.unsqueeze(-1), h_tilde, old),
            ),
            (_ORDER_HINT, lambda: comm_first),
        ],
    )


def check_rim_step(fn: Callable[..., Any]) -> None:
    """Check ``fn(cell, x (B, m, d_in), state) -> (RIMState(h, c), mask (B, n))`` against ``cell(x, state)``.

    One RIM step: competition -> independent dynamics -> communication -> masked update (active modules take
    the new h and c, inactive modules keep theirs exactly). Cases: (m = 1, k = 1), (m = 3, k = n),
    (m = 2, k = 3 of 6), from a random (non-zero) state.
    """
    name = "RIM step"
    _require_callable(fn)
    cases = [(2, 1, 4, 1), (3, 3, 5, 5), (4, 2, 6, 3)]
    d_in, d_h = 5, 6
    for index, (b, m, n, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, m={m} input slot{'s' if m > 1 else ''}, n={n}, k={k}"

        def make(index=index, b=b, m=m, n=n, k=k):
            with _seeded(SEED + 40 + index) as gen:
                cell = RIMCell(d_in, n_modules=n, k_active=k, d_hidden=d_h, rnn="lstm", **_SMALL_CELL).eval()
                x = _randn(gen, b, m, d_in, scale=2.0)
                return cell, x, RIMState(_randn(gen, b, n, d_h, scale=0.5), _randn(gen, b, n, d_h, scale=0.5))

        got = _call(name, fn, make(), label)
        cell, x, state = make()  # built anew: the learner's function may have changed its copy
        with torch.no_grad():
            _, ref, info = cell(x, state)
            comp = cell.input_attention(x, state.h)
            h_tilde, _ = cell.rnn(comp.read, (state.h, state.c))
            h_comm_first, _ = _comm_first(cell, x, state)
        new_state, mask = _expect_tuple(name, got, label, ("RIMState(h, c)", "mask (B, n)"))
        if not isinstance(new_state, (tuple, list)) or len(new_state) != 2:
            raise ExerciseFailure(
                f"{name} ({label}): expected the new state as a RIMState(h, c), "
                f"got {type(new_state).__name__}"
            )
        h, c = new_state
        _compare_mask(
            name,
            mask,
            info.mask,
            f"mask ({label})",
            k,
            "return the mask of the competition, cell.input_attention(x, h).mask",
        )
        _compare_states(
            name,
            h,
            ref.h,
            state.h,
            info.mask,
            f"h ({label})",
            _rim_step_hint,
            (h, h_tilde, info.mask, state.h, h_comm_first),
        )
        _compare_states(
            name,
            c,
            ref.c,
            state.c,
            info.mask,
            f"c ({label})",
            "active modules take the cell state c~ from the recurrent cell",
        )
    passed(name, "3 cases (1 to 3 input slots, k = 1, 3 and n)")


def _run_rim_hint(hs: Any, hs_ref: Tensor, rim: RIM, x: Tensor) -> str:
    if not isinstance(hs, Tensor):
        return ""
    if hs.shape == (hs_ref.shape[1], hs_ref.shape[0], *hs_ref.shape[2:]):
        return "stack the steps along dim 1 (time): torch.stack(hs, dim=1) -> (B, T, n, d_h)"
    if hs.shape != hs_ref.shape or hs.dtype != hs_ref.dtype:
        return ""
    with torch.no_grad():
        fresh = torch.stack([rim.cell(x[:, t])[0] for t in range(x.shape[1])], dim=1)
    if _close(hs, fresh):
        return "pass the state returned by each step into the next step (yours restarts from zeros)"
    bad = ~torch.isclose(hs.detach(), hs_ref, atol=ATOL, rtol=RTOL).flatten(2).all(-1).all(0)  # (T,)
    return (
        f"the first time step that differs is t={int(torch.nonzero(bad).flatten()[0])}" if bad.any() else ""
    )


def check_run_rim(fn: Callable[..., Any]) -> None:
    """Check ``fn(cell, x (B, T, m, d_in)) -> (hs (B, T, n, d_h), masks (B, T, n) bool)``.

    Run the cell over the sequence from its zero initial state, carrying the state from step to step;
    ``hs[:, t]`` is the module state after step t and ``masks[:, t]`` says who was active.
    Reference: :class:`minirims.model.RIM`. Cases: (T = 5, m = 1, k = 2 of 4), (T = 4, m = 2, k = 3 of 5),
    (T = 3, k = n).
    """
    name = "run RIM"
    _require_callable(fn)
    cases = [(2, 5, 1, 4, 2), (3, 4, 2, 5, 3), (2, 3, 1, 3, 3)]
    d_in, d_h = 3, 6
    for index, (b, t_len, m, n, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, T={t_len}, m={m}, n={n}, k={k}"

        def make(index=index, b=b, t_len=t_len, m=m, n=n, k=k):
            with _seeded(SEED + 50 + index) as gen:
                rim = RIM(d_in, n_modules=n, k_active=k, d_hidden=d_h, rnn="lstm", **_SMALL_CELL).eval()
                return rim, _randn(gen, b, t_len, m, d_in, scale=2.0)

        theirs, x = make()
        got = _call(name, fn, (theirs.cell, x), label)
        rim, x = make()  # built anew: the learner's function may have changed its copy
        with torch.no_grad():
            out, _, trace = rim(x, trace=True)
        hs_ref = out.reshape(b, t_len, n, d_h)
        hs, masks = _expect_tuple(name, got, label, ("hs (B, T, n, d_h)", "masks (B, T, n)"))
        _compare(name, hs, hs_ref, f"hs ({label})", _run_rim_hint, (hs, hs_ref, rim, x))
        if isinstance(masks, Tensor) and masks.shape == trace.masks.shape:
            _compare_mask(
                name,
                masks.flatten(0, 1),
                trace.masks.flatten(0, 1),
                f"masks ({label}; row = example * T + t)",
                k,
                "keep info.mask of every step and stack along dim 1 (time)",
            )
        else:
            compare(name, masks, trace.masks, what=f"masks ({label})")
    passed(name, "3 cases (T = 3 to 5 steps, k = 2, 3 and n)")


# ----------------------------------------------------------------------------------------------------------
# making it fast: fold the value projection into the module cells' input weights


def _fold_hint(got: Any, w_v: Tensor, w_ih: Tensor) -> str:
    if isinstance(got, Tensor) and got.dim() == 3 and got.shape[1:] == (w_ih.shape[-1], w_v.shape[1]):
        return "you returned (n, G, d_in): the fold maps an input (d_in) to gates (G), so it is (n, d_in, G)"
    if isinstance(got, Tensor) and got.shape == (w_ih.shape[0], w_v.shape[1], w_ih.shape[-1]):
        return (
            "the shape is right but not the values: the value of an input is x @ w_v.T (nn.Linear keeps "
            "its weight as (out, in)), and its gates are value @ w_ih[i]; so module i's fold is "
            "w_v.T @ w_ih[i]"
        )
    return ""


def check_fold_value_weights(fn: Callable[..., Any]) -> None:
    """``fn(w_v (d_v, d_in), w_ih (n, d_v, G)) -> (n, d_in, G)``: ``x @ out[i] == (x @ w_v.T) @ w_ih[i]``."""
    _require_callable(fn)
    name = "fold_value_weights"
    settings = ((3, 4, 6, 8), (6, 1, 5, 12), (2, 7, 3, 4))
    for index, (n, d_in, d_v, g) in enumerate(settings):
        with _seeded(SEED + 60 + index) as gen:
            w_v = _randn(gen, d_v, d_in)
            w_ih = _randn(gen, n, d_v, g)
        label = f"case {index + 1}: w_v ({d_v}, {d_in}), w_ih ({n}, {d_v}, {g})"
        got = _call(name, fn, (w_v.clone(), w_ih.clone()), label)
        expected = torch.einsum("vi,nvg->nig", w_v, w_ih)
        _compare(name, got, expected, f"output (n, d_in, G) ({label})", _fold_hint, (got, w_v, w_ih))
    passed(name, f"{len(settings)} cases")
