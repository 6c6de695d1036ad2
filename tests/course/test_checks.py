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
        checks.mechanisms,
    ]
    assert list(checks.BY_NOTEBOOK) == [f"{i:02d}" for i in range(1, 10)]
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


def _tensors(value, depth=0):
    """Every tensor in ``value``: through tuples, lists, dicts and plain objects' attributes (not modules)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth > 3 or isinstance(value, (torch.nn.Module, type)) or callable(value):
        return
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item, depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type(re)):
        for item in vars(value).values():
            yield from _tensors(item, depth + 1)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.detach(), b.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_the_expected_values_are_in_no_frame_while_the_learners_function_runs(name):
    import inspect
    import sys

    right = answers.REFERENCE[name][0]
    found = []

    def thief(*args):
        answer = list(_tensors(right(*args)))
        given = list(_tensors(args))
        for frame in [info.frame for info in inspect.stack()[1:]] + [sys._getframe(1)]:
            for local, value in frame.f_locals.items():
                for tensor in _tensors(value):
                    if any(_same(tensor, a) for a in answer) and not any(_same(tensor, g) for g in given):
                        found.append(f"{frame.f_code.co_name}: {local}")
        return right(*args)

    getattr(checks, name)(thief)
    assert found == []


class _Sneaky(torch.Tensor):
    pass


def test_a_tensor_subclass_or_an_unknown_object_runs_no_code_once_the_expected_values_exist():
    answers.fails(
        checks.check_split_heads,
        lambda x, h: answers.REFERENCE["check_split_heads"][0](x, h).as_subclass(_Sneaky),
        r"^split_heads \(case 1: x \(2, 5, 12\), n_heads=3\): expected a torch\.Tensor, got a _Sneaky \(a "
        r"subclass of torch\.Tensor\); return a plain tensor$",
    )

    import inspect

    late = []

    class Lazy:  # records any of its code that runs after the result was sealed (expected values exist)
        def __getattr__(self, name):
            if not any(frame.function == "_sealed" for frame in inspect.stack()):
                late.append(name)
            raise AttributeError(name)

        @property
        def __class__(self):
            if not any(frame.function == "_sealed" for frame in inspect.stack()):
                late.append("__class__")
            return Lazy

    answers.fails(checks.check_merge_heads, lambda x: Lazy(), r"expected a torch\.Tensor, got Lazy")
    answers.fails(
        checks.check_attention, lambda *args: (Lazy(), Lazy()), r"expected a torch\.Tensor, got Lazy"
    )
    assert late == []
    # a named tuple of the learner's is read as its fields, not through its methods
    h_c = answers.REFERENCE["check_rim_step"][0]
    checks.check_rim_step(h_c)


def test_the_learners_function_cannot_change_what_its_answer_is_compared_with():
    right = answers.REFERENCE["check_multi_head_attention"][0]

    def vandal(mha, query, key_value, mask=None):
        with torch.no_grad():
            for p in mha.parameters():
                p.zero_()
        return right(mha, query, key_value, mask)  # right for the module it broke

    answers.fails(checks.check_multi_head_attention, vandal, r"multi_head_attention weights .*case 1")
    rim_step = answers.REFERENCE["check_rim_step"][0]

    def reset(cell, x, state):
        with torch.no_grad():
            for p in cell.parameters():
                p.fill_(0.1)
        return rim_step(cell, x, state)

    answers.fails(checks.check_rim_step, reset, r"^RIM step")
