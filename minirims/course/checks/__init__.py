"""Exercise checks called from the course notebooks: ``checks.check_<thing>(learner_fn)``.

Each check runs the learner's function and the package's reference on fixed, seeded inputs and prints one pass
line, or raises :class:`ExerciseFailure` saying precisely what differs (shape, values, which heads or modules)
and, when the answer matches a common mistake, which one. A learner function that still raises the exercise's
``NotImplementedError`` lets it through unchanged, so the grader reports "not attempted".

One module per notebook: :mod:`.attention` (01), :mod:`.dynamics` (02), :mod:`.competition` (03),
:mod:`.communication` (04), :mod:`.cell` (05), :mod:`.copying` (06), :mod:`.mnist` (07), :mod:`.balls` (08).
:mod:`._base` compares values and prints the pass line; :mod:`._common` holds the helpers all of them share.
"""

from minirims.course.checks._base import ExerciseFailure
from minirims.course.checks.attention import (
    check_attention,
    check_merge_heads,
    check_multi_head_attention,
    check_split_heads,
)
from minirims.course.checks.balls import check_last_frame_guess
from minirims.course.checks.cell import check_fold_value_weights, check_rim_step, check_run_rim
from minirims.course.checks.communication import check_gated_update, check_module_attention
from minirims.course.checks.competition import check_input_attention, check_topk_mask
from minirims.course.checks.copying import check_copy_accuracy, check_copying_sequences
from minirims.course.checks.dynamics import check_group_gru_step, check_group_linear, check_group_lstm_step
from minirims.course.checks.mnist import check_resize_nearest

#: the checks of each notebook, by notebook number
BY_NOTEBOOK: dict[str, tuple[str, ...]] = {
    "01": ("check_attention", "check_split_heads", "check_merge_heads", "check_multi_head_attention"),
    "02": ("check_group_linear", "check_group_lstm_step", "check_group_gru_step"),
    "03": ("check_input_attention", "check_topk_mask"),
    "04": ("check_module_attention", "check_gated_update"),
    "05": ("check_rim_step", "check_run_rim", "check_fold_value_weights"),
    "06": ("check_copying_sequences", "check_copy_accuracy"),
    "07": ("check_resize_nearest",),
    "08": ("check_last_frame_guess",),
}

__all__ = [
    "BY_NOTEBOOK",
    "ExerciseFailure",
    "check_attention",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
    "check_group_linear",
    "check_group_lstm_step",
    "check_group_gru_step",
    "check_input_attention",
    "check_topk_mask",
    "check_module_attention",
    "check_gated_update",
    "check_rim_step",
    "check_run_rim",
    "check_fold_value_weights",
    "check_copying_sequences",
    "check_copy_accuracy",
    "check_resize_nearest",
    "check_last_frame_guess",
]
