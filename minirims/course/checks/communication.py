"""Checks for notebook 04: attention among modules, and the gated residual update of the active modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from minirims.attention import merge_heads, split_heads
from minirims.communication import CommunicationAttention
from minirims.course.checks._core import (
    _call,
    _compare,
    _compare_states,
    _expect_tuple,
    _first_match,
    _randn,
    _random_mask,
    _require_callable,
    _seeded,
    passed,
)
from minirims.group import GroupLinear

__all__ = ["check_module_attention", "check_gated_update"]

SEED = 3141


# ----------------------------------------------------------------------------------------------------------
# attention among modules


def _module_attention_hint(attn: Any, scores: Tensor, d_k: int, heads: int) -> str:
    if isinstance(attn, Tensor) and attn.dim() == 3:
        return (
            "keep one attention map per head, (B, H, n, n) even when H = 1: split q, k and v into heads "
            "with split_heads first"
        )
    root = math.sqrt(d_k)
    return _first_match(
        attn,
        [
            ("divide the scores by sqrt(d_k) (the key size per head)", lambda: torch.softmax(scores, dim=-1)),
            (
                "take the softmax over the modules being read (the last dim)",
                lambda: torch.softmax(scores / root, dim=-2),
            ),
        ],
    )


def _read_hint(a: Any) -> str:
    if isinstance(a, Tensor) and a.dim() == 4:
        return "merge the heads back into one vector per module: merge_heads(attn @ v) -> (B, n, H*d_v)"
    return "a = merge_heads(attn @ v): each module's attention-weighted sum of the values, heads concatenated"


def check_module_attention(fn: Callable[..., Any]) -> None:
    """Check ``fn(h (B, n, d_h), query, key, value, n_heads) -> (a (B, n, H*d_v), attn (B, H, n, n))``.

    ``query``, ``key``, ``value`` are per-module projections (:class:`~minirims.group.GroupLinear`); the
    attention is multi-head: split the projections into H heads, ``softmax(q k^T / sqrt(d_k))`` per head, read
    the values and merge the heads. Cases: 1, 2 and 4 heads. Reference:
    :class:`minirims.communication.CommunicationAttention`.
    """
    name = "module attention"
    _require_callable(fn)
    cases = [(2, 4, 6, 1, 4, 3), (3, 5, 8, 2, 4, 5), (2, 3, 8, 4, 2, 2)]
    for index, (b, n, d_h, heads, d_k, d_v) in enumerate(cases):
        label = f"case {index + 1}: B={b}, n={n} modules, H={heads} head{'s' if heads > 1 else ''}"

        def make(index=index, b=b, n=n, d_h=d_h, heads=heads, d_k=d_k, d_v=d_v):
            with _seeded(SEED + 20 + index) as gen:
                comm = CommunicationAttention(n, d_h, n_heads=heads, d_k=d_k, d_v=d_v, dropout=0.0).eval()
                return comm, _randn(gen, b, n, d_h, scale=2.0)

        theirs, h = make()
        got = _call(name, fn, (h, theirs.query, theirs.key, theirs.value, heads), label)
        comm, h = make()  # built anew: the learner's function may have changed its copy
        with torch.no_grad():
            _, attn_ref = comm(h, torch.ones(b, n, dtype=torch.bool))
            a_ref = merge_heads(attn_ref @ split_heads(comm.value(h), heads))
            q, k = split_heads(comm.query(h), heads), split_heads(comm.key(h), heads)
            scores = q @ k.transpose(-2, -1)
        a, attn = _expect_tuple(name, got, label, ("a (B, n, H*d_v)", "attn (B, H, n, n)"))
        _compare(name, attn, attn_ref, f"attn ({label})", _module_attention_hint, (attn, scores, d_k, heads))
        _compare(name, a, a_ref, f"a ({label})", _read_hint, (a,))
    passed(name, "3 cases (1, 2 and 4 heads)")


# ----------------------------------------------------------------------------------------------------------
# gated residual, active modules only


def _gated_update_hint(got: Any, h: Tensor, mask: Tensor, fa: Tensor, ga: Tensor) -> str:
    m = mask.unsqueeze(-1)
    return _first_match(
        got,
        [
            (
                "the gate is sigmoid(g(a)) and the candidate tanh(f(a)); you swapped f and g",
                lambda: torch.where(m, h + torch.sigmoid(fa) * torch.tanh(ga), h),
            ),
            (
                "the update is a residual: add it to h (h + sigmoid(g(a)) * tanh(f(a)))",
                lambda: torch.where(m, torch.sigmoid(ga) * torch.tanh(fa), h),
            ),
            (
                "the gate is a sigmoid and the candidate a tanh, not the other way round",
                lambda: torch.where(m, h + torch.tanh(ga) * torch.sigmoid(fa), h),
            ),
        ],
    )


def check_gated_update(fn: Callable[..., Any]) -> None:
    """Check ``fn(h (B, n, d_h), a (B, n, d_a), mask (B, n) bool, f, g) -> h_out (B, n, d_h)``.

    ``h_out = h + sigmoid(g(a)) * tanh(f(a))`` for active modules (mask True) and exactly ``h`` for inactive
    ones; ``f`` and ``g`` are per-module :class:`~minirims.group.GroupLinear`.
    Cases: k = 1, k = n, k = 3 of 6.
    """
    name = "gated update"
    _require_callable(fn)
    cases = [(3, 4, 6, 5, 1), (2, 5, 4, 8, 5), (4, 6, 6, 4, 3)]
    for index, (b, n, d_h, d_a, k) in enumerate(cases):
        label = f"case {index + 1}: B={b}, n={n} modules, k={k} active"

        def make(index=index, b=b, n=n, d_h=d_h, d_a=d_a, k=k):
            with _seeded(SEED + 30 + index) as gen:
                f, g = GroupLinear(n, d_a, d_h), GroupLinear(n, d_a, d_h)
                h, a = _randn(gen, b, n, d_h), _randn(gen, b, n, d_a, scale=2.0)
                return f, g, h, a, _random_mask(gen, b, n, k)

        f, g, h, a, mask = make()
        got = _call(name, fn, (h, a, mask, f, g), label)
        f, g, h, a, mask = make()  # built anew: the learner's function may have changed its copy
        with torch.no_grad():
            fa, ga = f(a), g(a)
        expected = torch.where(mask.unsqueeze(-1), h + torch.sigmoid(ga) * torch.tanh(fa), h)
        _compare_states(
            name, got, expected, h, mask, f"h_out ({label})", _gated_update_hint, (got, h, mask, fa, ga)
        )
    passed(name, "3 cases (k = 1, 3 and n)")
