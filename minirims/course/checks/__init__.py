"""Exercise checks called from the course notebooks: ``checks.check_<thing>(learner_fn)``.

One module per notebook: :mod:`.attention` (01), :mod:`.dynamics` (02), :mod:`.competition` (03),
:mod:`.communication` (04), :mod:`.cell` (05), :mod:`.copying` (06), :mod:`.mnist` (07), :mod:`.balls` (08),
:mod:`.mechanisms` (09);
:mod:`._core` holds what they are made of and says what a check prints or raises.
"""

from minirims.course.checks import (
    attention,
    balls,
    cell,
    communication,
    competition,
    copying,
    dynamics,
    mechanisms,
    mnist,
)
from minirims.course.checks._core import ExerciseFailure
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
from minirims.course.checks.mechanisms import check_foreground_share, check_random_mask
from minirims.course.checks.mnist import check_resize_nearest

_MODULES = (attention, dynamics, competition, communication, cell, copying, mnist, balls, mechanisms)

#: the checks of each notebook, by notebook number
BY_NOTEBOOK: dict[str, tuple[str, ...]] = {f"{i:02d}": tuple(m.__all__) for i, m in enumerate(_MODULES, 1)}

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
    "check_random_mask",
    "check_foreground_share",
]
