"""minirims.course.checks: what every check does, whichever notebook it belongs to.

Each check passes the reference answer with exactly one ``✔`` line, lets the blanked exercise's
NotImplementedError through unchanged, turns any other error of the learner's function into a failure naming
the case, names a wrong return type, refuses a non-callable argument with a ValueError that renders as one
``✘`` line, and leaves the caller's random state alone. The checks of each notebook are in
``test_checks_<module>.py``.
"""

from __future__ import annotations

import re

import pytest
import torch
from helpers import load_fixture

from minirims.course import checks

answers = load_fixture("check_answers")
NAMES = sorted(answers.REFERENCE)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_check_is_exported_and_registered_by_notebook():
    modules = [
        checks.attention,
        checks.dynamics,
        checks.competition,
        checks.communication,
        checks.cell,
        checks.copying,
        checks.mnist,
        checks.balls,
    ]
    assert list(checks.BY_NOTEBOOK) == [f"{i:02d}" for i in range(1, 9)]
    for (notebook, names), module in zip(checks.BY_NOTEBOOK.items(), modules, strict=True):
        assert names == tuple(module.__all__), notebook
        for name in names:
            assert getattr(checks, name) is getattr(module, name)
    exported = [name for names in checks.BY_NOTEBOOK.values() for name in names]
    assert sorted(exported) == NAMES
    assert set(checks.__all__) == {"BY_NOTEBOOK", "ExerciseFailure", *exported}
    assert checks.BY_NOTEBOOK["08"] == ("check_last_frame_guess",)


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes_with_one_line(name, capsys):
    fn, line = answers.REFERENCE[name][:2]
    getattr(checks, name)(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(line), out


@pytest.mark.parametrize("name", NAMES)
def test_not_implemented_propagates_unchanged(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise 1.1: compute the attention")

    with pytest.raises(NotImplementedError, match=r"^Exercise 1\.1: compute the attention$") as info:
        getattr(checks, name)(blank)
    assert type(info.value) is NotImplementedError
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", NAMES)
def test_non_callable_is_a_value_error_that_renders_one_cross_line(name):
    with pytest.raises(ValueError, match=r"^fn: expected your function \(a callable\), got Tensor") as info:
        getattr(checks, name)(torch.zeros(3))
    assert [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in info.value._render_traceback_()] == [
        f"✘ {info.value}"
    ]


@pytest.mark.parametrize("name", NAMES)
def test_other_exceptions_become_failures_naming_the_case(name):
    def broken(*args):
        raise KeyError("oops")

    first_case = answers.REFERENCE[name][3]
    with pytest.raises(
        checks.ExerciseFailure, match=rf"your function raised KeyError on {re.escape(first_case)}"
    ) as info:
        getattr(checks, name)(broken)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_return_type_is_named(name):
    noun = answers.REFERENCE[name][2]
    answers.fails(getattr(checks, name), lambda *args: 3, rf"expected {re.escape(noun)}", r"got int")


@pytest.mark.parametrize("name", NAMES)
def test_global_random_state_untouched(name):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    getattr(checks, name)(answers.REFERENCE[name][0])
    assert torch.equal(torch.random.get_rng_state(), before)
