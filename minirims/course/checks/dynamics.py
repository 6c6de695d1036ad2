"""Checks for notebook 02 (GroupLinear, GroupLSTMCell, GroupGRUCell); see :mod:`..checks`.

Checks (learner signature):

- :func:`check_group_linear` -> ``group_linear(x (B, n, d_in), weight (n, d_in, d_out), bias (n, d_out) or
  None) -> (B, n, d_out)``
- :func:`check_group_lstm_step` -> ``group_lstm_step(x, h, c, weight_ih, weight_hh, bias) -> (h, c)``
- :func:`check_group_gru_step` -> ``group_gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h``
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from minirims.course.checks._base import passed
from minirims.course.checks._common import (
    _call,
    _compare,
    _expect_tuple,
    _first_match,
    _randn,
    _require_callable,
)
from minirims.group import GroupGRUCell, GroupLinear, GroupLSTMCell

__all__ = [
    "check_group_linear",
    "check_group_lstm_step",
    "check_group_gru_step",
]

SEED = 1234


def _generator(case: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + case)


# ----------------------------------------------------------------------------------------------------------
# 02: group linear


def _group_linear_cases() -> list[tuple[str, tuple[Any, ...]]]:
    settings = [(2, 3, 4, 5, True), (3, 1, 6, 2, True), (4, 5, 3, 3, False), (1, 6, 7, 1, True)]
    cases = []
    for i, (b, n, d_in, d_out, bias) in enumerate(settings):
        g = _generator(40 + i)
        x, weight = _randn(g, b, n, d_in), _randn(g, n, d_in, d_out)
        label = f"case {i + 1}: x (B={b}, n={n}, d_in={d_in}), weight ({n}, {d_in}, {d_out})"
        label += ", bias" if bias else ", bias=None"
        cases.append((label, (x, weight, _randn(g, n, d_out) if bias else None)))
    return cases


def check_group_linear(fn: Callable[..., Any]) -> None:
    """Check ``group_linear(x, weight, bias) -> y``, y[:, i] = x[:, i] @ weight[i] + bias[i].

    Shapes: x (B, n, d_in), weight (n, d_in, d_out), bias (n, d_out) or None -> y (B, n, d_out).
    Cases include ``bias=None``, one module, and non-square weights (so a transposed weight shows).
    """
    _require_callable(fn)
    name = "group_linear"
    cases = _group_linear_cases()
    for label, (x, weight, bias) in cases:
        ref = GroupLinear(*weight.shape, bias=bias is not None)
        with torch.no_grad():
            ref.weight.copy_(weight)
            if bias is not None:
                ref.bias.copy_(bias)
            expected = ref(x)
        got = _call(name, fn, (x.clone(), weight.clone(), None if bias is None else bias.clone()), label)

        def diagnose(
            got: Any = got, x: Tensor = x, weight: Tensor = weight, bias: Tensor | None = bias
        ) -> str:
            plain = torch.einsum("bni,nio->bno", x, weight)
            candidates = [
                (
                    "every module used module 0's weights; module i must use weight[i] (keep n in the einsum "
                    "output: 'bni,nio->bno')",
                    lambda: torch.einsum("bni,io->bno", x, weight[0]) + (0 if bias is None else bias[0]),
                ),
                (
                    "the inputs of all modules were summed; keep n in the output ('bni,nio->bno', not "
                    "'bni,nio->bo')",
                    lambda: plain.sum(1, keepdim=True).expand_as(plain) + (0 if bias is None else bias),
                ),
            ]
            if bias is not None:
                candidates.insert(
                    0,
                    (
                        "the output matches x @ weight without the bias; add bias (n, d_out), "
                        "which broadcasts over the batch",
                        lambda: plain,
                    ),
                )
            return _first_match(got, candidates)

        _compare(name, got, expected, f"output (B, n, d_out) ({label})", diagnose, per=(1, "module"))
    passed(name, f"{len(cases)} cases (with and without bias, 1 to 4 modules)")


# ----------------------------------------------------------------------------------------------------------
# 02: one GroupLSTMCell step


def _lstm_with_order(
    x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor, order: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """An LSTM step that reads the four gate chunks in ``order`` (indices into i, f, g, o)."""
    gates = torch.einsum("bni,nio->bno", x, w_ih) + torch.einsum("bnh,nho->bno", h, w_hh) + bias
    chunks = gates.chunk(4, dim=-1)
    i, f, g, o = (chunks[j] for j in order)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _lstm_cases() -> list[tuple[str, tuple[Tensor, ...]]]:
    settings = [(2, 3, 5, 4), (1, 1, 3, 2), (3, 4, 2, 6), (2, 6, 7, 3)]
    cases = []
    for i, (b, n, d_in, d_h) in enumerate(settings):
        g = _generator(50 + i)
        args = (
            _randn(g, b, n, d_in),
            0.5 * _randn(g, b, n, d_h),
            _randn(g, b, n, d_h),
            0.5 * _randn(g, n, d_in, 4 * d_h),
            0.5 * _randn(g, n, d_h, 4 * d_h),
            0.5 * _randn(g, n, 4 * d_h),
        )
        cases.append((f"case {i + 1}: B={b}, n={n}, d_in={d_in}, d_h={d_h}", args))
    return cases


_GATES = "ifgo"


def check_group_lstm_step(fn: Callable[..., Any]) -> None:
    """Check ``group_lstm_step(x, h, c, weight_ih, weight_hh, bias) -> (h_new, c_new)``.

    Shapes: x (B, n, d_in); h, c (B, n, d_h); weight_ih (n, d_in, 4*d_h); weight_hh (n, d_h, 4*d_h);
    bias (n, 4*d_h); gate order i, f, g, o (as ``nn.LSTMCell`` and :class:`~minirims.group.GroupLSTMCell`).
    """
    _require_callable(fn)
    name = "group_lstm_step"
    cases = _lstm_cases()
    for label, args in cases:
        x, h, c, w_ih, w_hh, bias = args
        n, d_in, four_dh = w_ih.shape
        ref = GroupLSTMCell(n, d_in, four_dh // 4)
        with torch.no_grad():
            ref.weight_ih.copy_(w_ih)
            ref.weight_hh.copy_(w_hh)
            ref.bias.copy_(bias)
            exp_h, exp_c = ref(x, (h, c))
        got = _call(name, fn, tuple(t.clone() for t in args), label)
        got_h, got_c = _expect_tuple(name, got, label, ("h_new", "c_new"), "pair")

        def diagnose(got_c: Any = got_c, args: tuple = args) -> str:
            candidates = []
            for order in itertools.permutations(range(4)):
                if order == (0, 1, 2, 3):
                    continue
                words = ", ".join(_GATES[j] for j in order)
                candidates.append(
                    (
                        f"your c_new matches the chunks read as gates in the order ({words}); the stacked "
                        "weights hold the gates in PyTorch's order: i, f, g, o = gates.chunk(4, dim=-1)",
                        lambda order=order: _lstm_with_order(*args, order=order)[1],
                    )
                )
            return _first_match(got_c, candidates)

        _compare(name, got_c, exp_c, f"c_new (B, n, d_h) ({label})", diagnose, per=(1, "module"))
        _compare(
            name,
            got_h,
            exp_h,
            f"h_new (B, n, d_h) ({label})",
            lambda: "c_new is right; h_new = sigmoid(o) * tanh(c_new) (the new cell state, not the old)",
            per=(1, "module"),
        )
    passed(name, f"{len(cases)} cases (1 to 6 modules, odd sizes)")


# ----------------------------------------------------------------------------------------------------------
# 02: one GroupGRUCell step


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


def _gru_cases() -> list[tuple[str, tuple[Tensor, ...]]]:
    settings = [(2, 3, 5, 4), (1, 1, 3, 2), (3, 4, 2, 6)]
    cases = []
    for i, (b, n, d_in, d_h) in enumerate(settings):
        g = _generator(60 + i)
        args = (
            _randn(g, b, n, d_in),
            _randn(g, b, n, d_h),
            0.7 * _randn(g, n, d_in, 3 * d_h),
            0.7 * _randn(g, n, d_h, 3 * d_h),
            0.7 * _randn(g, n, 3 * d_h),
            0.7 * _randn(g, n, 3 * d_h),
        )
        cases.append((f"case {i + 1}: B={b}, n={n}, d_in={d_in}, d_h={d_h}", args))
    return cases


def check_group_gru_step(fn: Callable[..., Any]) -> None:
    """Check ``group_gru_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h_new``.

    Shapes: x (B, n, d_in); h (B, n, d_h); weight_ih (n, d_in, 3*d_h); weight_hh (n, d_h, 3*d_h); bias_ih,
    bias_hh (n, 3*d_h); gate order r, z, n and ``h' = (1 - z) * n + z * h`` (as ``nn.GRUCell`` and
    :class:`~minirims.group.GroupGRUCell`).
    """
    _require_callable(fn)
    name = "group_gru_step"
    cases = _gru_cases()
    for label, args in cases:
        x, h, w_ih, w_hh, b_ih, b_hh = args
        n, d_in, three_dh = w_ih.shape
        ref = GroupGRUCell(n, d_in, three_dh // 3)
        with torch.no_grad():
            for param, value in zip(
                (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh), args[2:], strict=True
            ):
                param.copy_(value)
            expected = ref(x, h)
        got = _call(name, fn, tuple(t.clone() for t in args), label)

        def diagnose(got: Any = got, args: tuple = args) -> str:
            candidates = [
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
            ]
            return _first_match(got, candidates)

        _compare(name, got, expected, f"h_new (B, n, d_h) ({label})", diagnose, per=(1, "module"))
    passed(name, f"{len(cases)} cases (1 to 4 modules, odd sizes)")
