"""Checks for notebook 02: a weight block per module (group linear), GroupLSTMCell and GroupGRUCell steps."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from minirims.course.checks._core import (
    _call,
    _compare,
    _expect_tuple,
    _first_match,
    _gen,
    _randn,
    _require_callable,
    passed,
)
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell

__all__ = ["check_group_linear", "check_group_lstm_step", "check_group_gru_step"]

SEED = 1234


def _reference(make: Callable[[], torch.nn.Module], values: Sequence[Tensor | None], *inputs: Any) -> Any:
    """``make()(*inputs)`` with the module's parameters (in registration order) set to ``values`` (None: no
    bias), leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        module = make()
    with torch.no_grad():
        for param, value in zip(module.parameters(), [v for v in values if v is not None], strict=True):
            param.copy_(value)
        return module(*inputs)


def _cases(seed: int, settings: list[tuple[int, ...]], make: Callable[..., tuple]) -> list[tuple[str, tuple]]:
    """``(label, make(gen, B, n, d_in, d_h))`` for each setting (B, n, d_in, d_h)."""
    return [
        (f"case {i + 1}: B={b}, n={n}, d_in={d_in}, d_h={d_h}", make(_gen(SEED + seed + i), b, n, d_in, d_h))
        for i, (b, n, d_in, d_h) in enumerate(settings)
    ]


# ----------------------------------------------------------------------------------------------------------
# group linear


def _group_linear_hint(got: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> str:
    plain = torch.einsum("bni,nio->bno", x, weight)
    candidates = [
        (
            "every module used module 0's weights; module i must use weight[i] (keep n in the einsum output: "
            "'bni,nio->bno')",
            lambda: torch.einsum("bni,io->bno", x, weight[0]) + (0 if bias is None else bias[0]),
        ),
        (
            "the inputs of all modules were summed; keep n in the output ('bni,nio->bno', not 'bni,nio->bo')",
            lambda: plain.sum(1, keepdim=True).expand_as(plain) + (0 if bias is None else bias),
        ),
    ]
    if bias is not None:
        candidates.insert(
            0,
            (
                "the output matches x @ weight without the bias; add bias (n, d_out), which broadcasts over "
                "the batch",
                lambda: plain,
            ),
        )
    return _first_match(got, candidates)


def check_group_linear(fn: Callable[..., Any]) -> None:
    """Check ``group_linear(x, weight, bias) -> y``, y[:, i] = x[:, i] @ weight[i] + bias[i].

    Shapes: x (B, n, d_in), weight (n, d_in, d_out), bias (n, d_out) or None -> y (B, n, d_out).
    Cases include ``bias=None``, one module, and non-square weights (so a transposed weight shows).
    """
    _require_callable(fn)
    name = "group_linear"
    settings = [(2, 3, 4, 5, True), (3, 1, 6, 2, True), (4, 5, 3, 3, False), (1, 6, 7, 1, True)]
    for i, (b, n, d_in, d_out, with_bias) in enumerate(settings):
        g = _gen(SEED + 40 + i)
        x, weight = _randn(g, b, n, d_in), _randn(g, n, d_in, d_out)
        bias = _randn(g, n, d_out) if with_bias else None
        label = f"case {i + 1}: x (B={b}, n={n}, d_in={d_in}), weight ({n}, {d_in}, {d_out})"
        label += ", bias" if with_bias else ", bias=None"
        got = _call(name, fn, (x.clone(), weight.clone(), None if bias is None else bias.clone()), label)
        expected = _reference(partial(GroupLinear, n, d_in, d_out, bias=with_bias), (weight, bias), x)
        what = f"output (B, n, d_out) ({label})"
        _compare(name, got, expected, what, _group_linear_hint, (got, x, weight, bias), per=(1, "module"))
    passed(name, f"{len(settings)} cases (with and without bias, 1 to 4 modules)")


# ----------------------------------------------------------------------------------------------------------
# one GroupLSTMCell step


def _lstm_with_order(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor, order: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """An LSTM step that reads the four gate chunks in ``order`` (indices into i, f, g, o)."""
    gates = torch.einsum("bni,nio->bno", x, w_ih) + torch.einsum("bnh,nho->bno", h, w_hh) + bias
    chunks = gates.chunk(4, dim=-1)
    i, f, g, o = (chunks[j] for j in order)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _lstm_order_hint(got_c: Any, args: tuple[Tensor, ...]) -> str:
    return _first_match(
        got_c,
        (
            (
                f"your c_new matches the chunks read as gates in the order "
                f"({', '.join('ifgo'[j] for j in order)}); the stacked weights hold the gates in PyTorch's "
                "order: i, f, g, o = gates.chunk(4, dim=-1)",
                lambda order=order: _lstm_with_order(*args, order=order)[1],
            )
            for order in itertools.permutations(range(4))
            if order != (0, 1, 2, 3)
        ),
    )


def check_group_lstm_step(fn: Callable[..., Any]) -> None:
    """Check ``group_lstm_step(x, h, c, weight_ih, weight_hh, bias) -> (h_new, c_new)``.

    Shapes: x (B, n, d_in); h, c (B, n, d_h); weight_ih (n, d_in, 4*d_h); weight_hh (n, d_h, 4*d_h);
    bias (n, 4*d_h); gate order i, f, g, o (as ``nn.LSTMCell`` and :class:`~minirims.group.GroupLSTMCell`).
    """
    _require_callable(fn)
    name = "group_lstm_step"
    cases = _cases(
        50,
        [(2, 3, 5, 4), (1, 1, 3, 2), (3, 4, 2, 6), (2, 6, 7, 3)],
        lambda g, b, n, d_in, d_h: (
            _randn(g, b, n, d_in),
            _randn(g, b, n, d_h, scale=0.5),
            _randn(g, b, n, d_h),
            *(
                _randn(g, *shape, scale=0.5)
                for shape in ((n, d_in, 4 * d_h), (n, d_h, 4 * d_h), (n, 4 * d_h))
            ),
        ),
    )
    for label, args in cases:
        x, h, c, w_ih = args[:4]
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        exp_h, exp_c = _reference(
            partial(GroupLSTMCell, *w_ih.shape[:2], w_ih.shape[2] // 4), args[3:], x, (h, c)
        )
        got_h, got_c = _expect_tuple(name, got, label, ("h_new", "c_new"), "pair")
        what = f"c_new (B, n, d_h) ({label})"
        _compare(name, got_c, exp_c, what, _lstm_order_hint, (got_c, args), per=(1, "module"))
        _compare(
            name,
            got_h,
            exp_h,
            f"h_new (B, n, d_h) ({label})",
            "c_new is right; h_new = sigmoid(o) * tanh(c_new) (the new cell state, not the old)",
            per=(1, "module"),
        )
    passed(name, f"{len(cases)} cases (1 to 6 modules, odd sizes)")


# ----------------------------------------------------------------------------------------------------------
# one GroupGRUCell step


def _gru_variant(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    order: Sequence[int] = (0, 1, 2),
    swap_z: bool = False,
    reset_after_bias: bool = True,
    reset_before_matmul: bool = False,
) -> Tensor:
    """A GRU step with one of the usual mistakes switched on (the defaults are the right step)."""
    gi = torch.einsum("bni,nio->bno", x, w_ih) + b_ih
    gh = torch.einsum("bnh,nho->bno", h, w_hh) + b_hh
    i_chunks, h_chunks = gi.chunk(3, dim=-1), gh.chunk(3, dim=-1)
    i_r, i_z, i_n = (i_chunks[j] for j in order)
    h_r, h_z, h_n = (h_chunks[j] for j in order)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    d_h = h.shape[-1]
    j = order[2]
    w_n, b_n = w_hh[..., j * d_h : (j + 1) * d_h], b_hh[..., j * d_h : (j + 1) * d_h]
    if reset_before_matmul:  # Cho et al. 2014: r * h before the product
        n = torch.tanh(i_n + torch.einsum("bnh,nho->bno", r * h, w_n) + b_n)
    elif reset_after_bias:
        n = torch.tanh(i_n + r * h_n)
    else:  # r multiplies h W_hn but not b_hn
        n = torch.tanh(i_n + r * (h_n - b_n) + b_n)
    return z * n + (1 - z) * h if swap_z else (1 - z) * n + z * h


def _gru_hint(got: Any, args: tuple[Tensor, ...]) -> str:
    return _first_match(
        got,
        [
            (
                "your h_new matches h' = z * n + (1 - z) * h: z is the share of the *old* state kept, "
                "h' = (1 - z) * n + z * h (as nn.GRUCell)",
                lambda: _gru_variant(*args, swap_z=True),
            ),
            (
                "your h_new matches the reset gate applied to h before the product, "
                "tanh(x W_in + (r * h) W_hn + b): that is the 2014 paper's GRU; nn.GRUCell applies r "
                "to the product, n = tanh(x W_in + b_in + r * (h W_hn + b_hn))",
                lambda: _gru_variant(*args, reset_before_matmul=True),
            ),
            (
                "your h_new matches r multiplying h W_hn but not its bias b_hn; "
                "n = tanh(x W_in + b_in + r * (h W_hn + b_hn)): add bias_hh before the chunk",
                lambda: _gru_variant(*args, reset_after_bias=False),
            ),
            (
                "your h_new matches the chunks read as (z, r, n); the stacked weights hold the gates in "
                "PyTorch's order r, z, n: r, z, n = gates.chunk(3, dim=-1)",
                lambda: _gru_variant(*args, order=(1, 0, 2)),
            ),
        ],
    )


def check_group_gru_step(fn: Callable[..., Any]) -> None:
    """Check ``group_gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h_new``.

    Shapes: x (B, n, d_in); h (B, n, d_h); weight_ih (n, d_in, 3*d_h); weight_hh (n, d_h, 3*d_h); bias_ih,
    bias_hh (n, 3*d_h); gate order r, z, n and ``h' = (1 - z) * n + z * h`` (as ``nn.GRUCell`` and
    :class:`~minirims.group.GroupGRUCell`).
    """
    _require_callable(fn)
    name = "group_gru_step"
    cases = _cases(
        60,
        [(2, 3, 5, 4), (1, 1, 3, 2), (3, 4, 2, 6)],
        lambda g, b, n, d_in, d_h: (
            _randn(g, b, n, d_in),
            _randn(g, b, n, d_h),
            *(
                _randn(g, *s, scale=0.7)
                for s in ((n, d_in, 3 * d_h), (n, d_h, 3 * d_h), (n, 3 * d_h), (n, 3 * d_h))
            ),
        ),
    )
    for label, args in cases:
        x, h, w_ih = args[:3]
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        expected = _reference(partial(GroupGRUCell, *w_ih.shape[:2], w_ih.shape[2] // 3), args[2:], x, h)
        _compare(
            name, got, expected, f"h_new (B, n, d_h) ({label})", _gru_hint, (got, args), per=(1, "module")
        )
    passed(name, f"{len(cases)} cases (1 to 4 modules, odd sizes)")
