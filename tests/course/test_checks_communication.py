"""The checks of notebook 04 (attention among modules, the gated update of active modules) name mistakes."""

from __future__ import annotations

import math

import torch
from helpers import load_fixture

from minirims.attention import merge_heads, split_heads
from minirims.course import checks

answers = load_fixture("check_answers")
fails, gated_update, module_attention = answers.fails, answers.gated_update, answers.module_attention


def test_module_attention_without_heads():
    def one_head(h, query, key, value, n_heads):
        q, k, v = query(h), key(h), value(h)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1] // n_heads), dim=-1)
        return attn @ v, attn

    fails(
        checks.check_module_attention,
        one_head,
        r"attn \(case 1: B=2, n=4 modules, H=1 head\): expected shape \(2, 1, 4, 4\), got \(2, 4, 4\)",
        r"one attention map per head",
    )


def test_module_attention_unscaled_and_unmerged():
    def unscaled(h, query, key, value, n_heads):
        q, k, v = (split_heads(p(h), n_heads) for p in (query, key, value))
        attn = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return merge_heads(attn @ v), attn

    def unmerged(h, query, key, value, n_heads):
        a, attn = module_attention(h, query, key, value, n_heads)
        return split_heads(a, n_heads), attn

    fails(checks.check_module_attention, unscaled, r"sqrt\(d_k\)")
    fails(
        checks.check_module_attention,
        unmerged,
        r"a \(case 1.*expected shape \(2, 4, 3\), got \(2, 1, 4, 3\)",
        r"merge",
    )


def test_gated_update_applied_to_inactive_modules_names_them():
    fails(
        checks.check_gated_update,
        lambda h, a, mask, f, g: h + torch.sigmoid(g(a)) * torch.tanh(f(a)),
        r"h_out \(case 1: B=3, n=4 modules, k=1 active\): example 0: "
        r"inactive modules \[\d, \d, \d\] must keep",
        r"active modules are \[\d\]",
    )


def test_gated_update_swapped_and_no_residual():
    def no_residual(h, a, mask, f, g):
        return torch.where(mask.unsqueeze(-1), torch.sigmoid(g(a)) * torch.tanh(f(a)), h)

    fails(
        checks.check_gated_update,
        lambda h, a, mask, f, g: gated_update(h, a, mask, g, f),
        r"example 0: active modules \[\d\] differ",
        r"swapped f and g",
    )
    fails(checks.check_gated_update, no_residual, r"max abs difference", r"residual")
