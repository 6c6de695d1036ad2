"""Exercise checks called from the course notebooks.

Each ``check_<thing>(learner_fn)`` runs the learner's function and the package's reference on fixed, seeded
inputs and prints one pass line, or raises :class:`~minirims.checks_base.ExerciseFailure` saying precisely
what differs (shape, values, which modules). A learner function that still raises the exercise's
``NotImplementedError`` lets it through unchanged, so the grader reports "not attempted".

The checks live in two files, by notebook: ``_checks_foundations`` (01 attention, 02 independent dynamics)
and ``_checks_rims`` (03 competition, 04 communication, 05 the cell).
"""

from minirims._checks_foundations import *  # noqa: F403
from minirims._checks_rims import *  # noqa: F403
from minirims.checks_base import ExerciseFailure  # noqa: F401
