"""The course's tooling: what the notebooks call to check exercises and draw figures, and the grader.

- :mod:`minirims.course.checks`: one module of exercise checks per notebook (``checks.check_<thing>(fn)``).
- :mod:`minirims.course.viz`: figures and widgets (attention maps, module activity, rollouts).
- :mod:`minirims.course.grade`: ``python -m minirims grade`` runs a learner's notebook, reports each exercise.

It imports the core (:mod:`minirims`); the core never imports it.
"""
