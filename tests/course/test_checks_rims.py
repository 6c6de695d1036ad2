"""The exercise checks of notebooks 03-05: pass with the reference answer, fail precisely on wrong answers."""

from __future__ import annotations

import math
import re

import pytest
import torch

from minirims.attention import merge_heads, split_heads
from minirims.cell import RIMState
from minirims.competition import topk_mask
from minirims.course import checks
from minirims.course.checks._core import ExerciseFailure

# ----------------------------------------------------------------------------------------------------------
# Reference answers, written the way a learner would (these are the notebooks' solutions)


def input_attention(x, h, key, value, query):
    null = x.new_zeros(x.shape[0], 1, x.shape[-1])
    slots = torch.cat([null, x], dim=1)
    k, v, q = key(slots), value(slots), query(h)
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
    return attn, attn @ v


def select_active(attn, k):
    winners = attn[..., 0].topk(k, dim=-1, largest=False).indices
    return torch.zeros(attn.shape[:2], dtype=torch.bool).scatter(-1, winners, True)


def module_attention(h, query, key, value, n_heads):
    q, k, v = (split_heads(p(h), n_heads) for p in (query, key, value))
    attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    return merge_heads(attn @ v), attn


def gated_update(h, a, mask, f, g):
    update = torch.sigmoid(g(a)) * torch.tanh(f(a))
    return torch.where(mask.unsqueeze(-1), h + update, h)


def rim_step(cell, x, state):
    h, c = state
    comp = cell.input_attention(x, h)
    h_tilde, c_tilde = cell.rnn(comp.read, (h, c))
    h_comm, _ = cell.communication(h_tilde, comp.mask)
    active = comp.mask.unsqueeze(-1)
    return RIMState(torch.where(active, h_comm, h), torch.where(active, c_tilde, c)), comp.mask


def run_rim(cell, x):
    state = cell.initial_state(x.shape[0])
    hs, masks = [], []
    for t in range(x.shape[1]):
        h, state, info = cell(x[:, t], state)
        hs.append(h)
        masks.append(info.mask)
    return torch.stack(hs, 1), torch.stack(masks, 1)


REFERENCE = {
    "check_input_attention": (input_attention, "✔ input attention passed"),
    "check_topk_mask": (select_active, "✔ top-k mask passed"),
    "check_module_attention": (module_attention, "✔ module attention passed"),
    "check_gated_update": (gated_update, "✔ gated update passed"),
    "check_rim_step": (rim_step, "✔ RIM step passed"),
    "check_run_rim": (run_rim, "✔ run RIM passed"),
    "check_fold_value_weights": (lambda w_v, w_ih: w_v.T @ w_ih, "✔ fold_value_weights passed"),
}


def fails(check, fn, *patterns):
    """Run a check expecting ExerciseFailure whose message contains every regex in ``patterns``."""
    with pytest.raises(ExerciseFailure) as info:
        check(fn)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
    return message


# ----------------------------------------------------------------------------------------------------------
# Every check


def test_all_checks_exported():
    from minirims.course.checks import cell, communication, competition

    modules = {"03": competition, "04": communication, "05": cell}
    assert {name for m in modules.values() for name in m.__all__} == set(REFERENCE)
    for notebook, module in modules.items():
        assert checks.BY_NOTEBOOK[notebook] == tuple(module.__all__)
        for name in module.__all__:
            assert getattr(checks, name) is getattr(module, name)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_passes_with_one_line(name, capsys):
    fn, line = REFERENCE[name]
    getattr(checks, name)(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(line), out


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_not_implemented_propagates_unchanged(name):
    def blank(*args):
        raise NotImplementedError("Exercise 3.1: do it")

    with pytest.raises(NotImplementedError, match=r"^Exercise 3\.1: do it$"):
        getattr(checks, name)(blank)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_not_callable_is_a_value_error(name):
    with pytest.raises(ValueError, match="fn: expected your function"):
        getattr(checks, name)(torch.zeros(3))


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_other_exceptions_become_failures(name):
    def broken(*args):
        raise KeyError("oops")

    fails(getattr(checks, name), broken, r"your function raised KeyError on case 1")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_wrong_return_type(name):
    fails(getattr(checks, name), lambda *args: 3, r"expected (a tuple|a torch\.Tensor)", r"got int")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_global_random_state_untouched(name):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    getattr(checks, name)(REFERENCE[name][0])
    assert torch.equal(torch.random.get_rng_state(), before)


# ----------------------------------------------------------------------------------------------------------
# 03: input attention


def test_input_attention_without_null_slot():
    def no_null(x, h, key, value, query):
        k, v, q = key(x), value(x), query(h)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
        return attn, attn @ v

    fails(
        checks.check_input_attention,
        no_null,
        r"attn \(case 1: B=2, m=1 input slot, n=4 modules\): expected shape \(2, 4, 2\), got \(2, 4, 1\)",
        r"prepend the null slot",
    )


def test_input_attention_null_slot_last():
    def null_last(x, h, key, value, query):
        slots = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
        k, v, q = key(slots), value(slots), query(h)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=-1)
        return attn, attn @ v

    fails(checks.check_input_attention, null_last, r"values differ", r"the null slot must be slot 0")


def test_input_attention_unscaled_and_wrong_softmax_dim():
    def unscaled(x, h, key, value, query):
        slots = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)
        attn = torch.softmax(query(h) @ key(slots).transpose(1, 2), dim=-1)
        return attn, attn @ value(slots)

    def over_modules(x, h, key, value, query):
        slots = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)
        k = key(slots)
        attn = torch.softmax(query(h) @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), dim=1)
        return attn, attn @ value(slots)

    fails(checks.check_input_attention, unscaled, r"sqrt\(d_k\)")
    fails(checks.check_input_attention, over_modules, r"softmax over the slots")


def test_input_attention_wrong_read():
    def bad_read(x, h, key, value, query):
        attn, read = input_attention(x, h, key, value, query)
        return attn, read * 2

    fails(
        checks.check_input_attention, bad_read, r"^input attention read \(case 1", r"attention-weighted sum"
    )


# ----------------------------------------------------------------------------------------------------------
# 03: top-k mask


def test_topk_most_null_instead_of_least_null_names_the_modules():
    def most_null(attn, k):
        return topk_mask(attn[..., 0], k)

    message = fails(
        checks.check_topk_mask,
        most_null,
        r"\(case 1: B=4, n=6 modules, m=1, k=1\): example 0: your mask selects modules \[\d\], "
        r"expected \[\d\]",
        r"attend MOST to the null slot",
    )
    assert "rows differ" in message


def test_topk_ranked_by_input_slot_score():
    def by_input(attn, k):
        return topk_mask(attn[..., 1:].max(-1).values, k)

    # with one input slot the two rules agree (case 1), with three slots they do not (case 2)
    fails(
        checks.check_topk_mask, by_input, r"case 2: B=5, n=6 modules, m=3, k=3", r"largest attention on one"
    )


def test_topk_wrong_dtype_and_shape_and_count():
    fails(checks.check_topk_mask, lambda attn, k: select_active(attn, k).float(), r"expected a bool mask")
    fails(
        checks.check_topk_mask,
        lambda attn, k: select_active(attn, k)[:, None],
        r"expected shape \(4, 6\), got \(4, 1, 6\)",
    )
    fails(
        checks.check_topk_mask,
        lambda attn, k: select_active(attn, min(k + 1, attn.shape[1])),
        r"expected exactly k=1",
    )


# ----------------------------------------------------------------------------------------------------------
# 04: module attention and the gated update


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
    def everyone(h, a, mask, f, g):
        return h + torch.sigmoid(g(a)) * torch.tanh(f(a))

    fails(
        checks.check_gated_update,
        everyone,
        r"h_out \(case 1: B=3, n=4 modules, k=1 active\): example 0: "
        r"inactive modules \[\d, \d, \d\] must keep",
        r"active modules are \[\d\]",
    )


def test_gated_update_swapped_and_no_residual():
    def swapped(h, a, mask, f, g):
        return gated_update(h, a, mask, g, f)

    def no_residual(h, a, mask, f, g):
        return torch.where(mask.unsqueeze(-1), torch.sigmoid(g(a)) * torch.tanh(f(a)), h)

    fails(checks.check_gated_update, swapped, r"example 0: active modules \[\d\] differ", r"swapped f and g")
    fails(checks.check_gated_update, no_residual, r"max abs difference", r"residual")


# ----------------------------------------------------------------------------------------------------------
# 05: the step and the sequence


def test_rim_step_without_masked_update():
    def no_mask(cell, x, state):
        comp = cell.input_attention(x, state.h)
        h_tilde, c_tilde = cell.rnn(comp.read, tuple(state))
        h_comm, _ = cell.communication(h_tilde, comp.mask)
        return RIMState(h_comm, c_tilde), comp.mask

    fails(
        checks.check_rim_step,
        no_mask,
        r"h \(case 1: B=2, m=1 input slot, n=4, k=1\): example 0: inactive modules",
    )


def test_rim_step_forgets_communication_or_c():
    def no_comm(cell, x, state):
        comp = cell.input_attention(x, state.h)
        h_tilde, c_tilde = cell.rnn(comp.read, tuple(state))
        active = comp.mask.unsqueeze(-1)
        return RIMState(
            torch.where(active, h_tilde, state.h), torch.where(active, c_tilde, state.c)
        ), comp.mask

    def c_unmasked(cell, x, state):
        new, mask = rim_step(cell, x, state)
        _, c_tilde = cell.rnn(cell.input_attention(x, state.h).read, tuple(state))
        return RIMState(new.h, c_tilde), mask

    fails(checks.check_rim_step, no_comm, r"active modules \[\d\] differ", r"after communication")
    fails(checks.check_rim_step, c_unmasked, r"^RIM step c \(case 1", r"inactive modules")


def test_rim_step_wrong_mask_names_modules():
    def inverted(cell, x, state):
        new, mask = rim_step(cell, x, state)
        return new, ~mask

    fails(
        checks.check_rim_step,
        inverted,
        r"mask \(case 1.*example 0: your mask selects modules \[\d, \d, \d\], expected \[\d\]",
    )


def test_run_rim_restarting_state_and_time_major():
    def restart(cell, x):
        hs, masks = [], []
        for t in range(x.shape[1]):
            h, _, info = cell(x[:, t])
            hs.append(h)
            masks.append(info.mask)
        return torch.stack(hs, 1), torch.stack(masks, 1)

    def time_major(cell, x):
        hs, masks = run_rim(cell, x)
        return hs.transpose(0, 1), masks.transpose(0, 1)

    fails(checks.check_run_rim, restart, r"hs \(case 1: B=2, T=5", r"pass the state returned by each step")
    fails(
        checks.check_run_rim,
        time_major,
        r"expected shape \(2, 5, 4, 6\), got \(5, 2, 4, 6\)",
        r"dim 1 \(time\)",
    )


# ----------------------------------------------------------------------------------------------------------
# 05: fold the value projection into the module cells' input weights


def test_fold_check_names_the_transposed_result_and_wrong_values():
    fails(
        checks.check_fold_value_weights, lambda w_v, w_ih: (w_v.T @ w_ih).transpose(1, 2), r"\(n, G, d_in\)"
    )
    fails(checks.check_fold_value_weights, lambda w_v, w_ih: 1.01 * (w_v.T @ w_ih), r"w_v\.T @ w_ih\[i\]")
