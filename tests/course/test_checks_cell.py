"""The checks of notebook 05 (a RIM step, the RIM over a sequence, folding W_v) name each mistake."""

from __future__ import annotations

import torch
from helpers import load_fixture

from minirims.cell import RIMState
from minirims.course import checks

answers = load_fixture("check_answers")
fails, rim_step, run_rim = answers.fails, answers.rim_step, answers.run_rim


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
        new = RIMState(torch.where(active, h_tilde, state.h), torch.where(active, c_tilde, state.c))
        return new, comp.mask

    def c_unmasked(cell, x, state):
        new, mask = rim_step(cell, x, state)
        _, c_tilde = cell.rnn(cell.input_attention(x, state.h).read, tuple(state))
        return RIMState(new.h, c_tilde), mask

    fails(checks.check_rim_step, no_comm, r"active modules \[\d\] differ", r"after communication")
    fails(checks.check_rim_step, c_unmasked, r"^RIM step c \(case 1", r"inactive modules")


def test_communication_before_the_dynamics():
    def comm_first(cell, x, state):
        h, c = state
        comp = cell.input_attention(x, h)
        h_comm, _ = cell.communication(h, comp.mask)
        h_tilde, c_tilde = cell.rnn(comp.read, (h_comm, c))
        active = comp.mask.unsqueeze(-1)
        return RIMState(torch.where(active, h_tilde, h), torch.where(active, c_tilde, c)), comp.mask

    fails(
        checks.check_rim_step,
        comm_first,
        r"^RIM step h \(case 1",
        r"active modules \[\d\] differ",
        r"Hint: you let the modules communicate before the dynamics",
    )


def test_rim_step_float64_state_is_a_dtype_mismatch():
    def double(cell, x, state):
        new, mask = rim_step(cell, x, state)
        return RIMState(new.h.double(), new.c), mask

    fails(
        checks.check_rim_step,
        double,
        r"^RIM step h \(case 1.*\): expected dtype torch\.float32, got torch\.float64",
        r"double precision",
    )


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


def test_fold_check_names_the_transposed_result_and_wrong_values():
    fails(
        checks.check_fold_value_weights, lambda w_v, w_ih: (w_v.T @ w_ih).transpose(1, 2), r"\(n, G, d_in\)"
    )
    fails(checks.check_fold_value_weights, lambda w_v, w_ih: 1.01 * (w_v.T @ w_ih), r"w_v\.T @ w_ih\[i\]")
