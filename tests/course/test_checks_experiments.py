"""The checks added for the GRU exercise (02), the copy accuracy (06) and the nearest resize (07).

Each accepts the reference and rejects the typical mistakes with a message that names the mistake.
"""

from __future__ import annotations

import re

import pytest
import torch

from minirims.course import checks
from minirims.course.checks import copying, dynamics, mnist
from minirims.experiments.data.mnist import resize_nearest


def _fails(check, fn, *fragments: str) -> str:
    with pytest.raises(checks.ExerciseFailure) as info:
        check(fn)
    message = str(info.value)
    for fragment in fragments:
        assert re.search(fragment, message), f"{fragment!r} not in: {message}"
    return message


# ------------------------------------------------------------------------------------------------ GRU (02)


def gru(x, h, w_ih, w_hh, b_ih, b_hh, **mistake):
    return dynamics._gru_variant(x, h, w_ih, w_hh, b_ih, b_hh, **mistake)


def test_gru_check_accepts_the_reference_and_the_package(capsys):
    checks.check_group_gru_step(gru)
    assert capsys.readouterr().out.startswith("✔ group_gru_step passed")


@pytest.mark.parametrize(
    ("mistake", "fragment"),
    [
        ({"swap_z": True}, r"z \* n \+ \(1 - z\) \* h"),
        ({"reset_before_matmul": True}, "2014 paper's GRU"),
        ({"reset_after_bias": False}, "but not its bias b_hn"),
        ({"order": (1, 0, 2)}, r"\(z, r, n\)"),
    ],
)
def test_gru_check_names_the_mistake(mistake, fragment):
    _fails(checks.check_group_gru_step, lambda *a: gru(*a, **mistake), "h_new", fragment)


def test_gru_check_lets_the_stub_through_and_rejects_a_wrong_shape():
    def stub(*args):
        raise NotImplementedError("Exercise 2.3: ...")

    with pytest.raises(NotImplementedError):
        checks.check_group_gru_step(stub)
    _fails(checks.check_group_gru_step, lambda x, h, *rest: h[:, :1], "expected shape")


# ------------------------------------------------------------------------------------- copy accuracy (06)


def accuracy(logits, targets):
    return (logits[:, -10:].argmax(-1) == targets[:, -10:]).float().mean(0)


def test_copy_accuracy_check_accepts_the_reference(capsys):
    checks.check_copy_accuracy(accuracy)
    assert capsys.readouterr().out.startswith("✔ copy_accuracy passed")


@pytest.mark.parametrize(
    ("fn", "fragments"),
    [
        (lambda lg, tg: (lg.argmax(-1) == tg).float().mean(0), ("expected shape \\(10,\\)", "all L steps")),
        (lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).float().mean(), ("not .mean\\(\\)",)),
        (
            lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).float().mean(1),
            ("one accuracy per sequence",),
        ),
        (lambda lg, tg: (lg[:, :10].argmax(-1) == tg[:, -10:]).float().mean(0), ("answer step", "first 10")),
        (lambda lg, tg: 100 * accuracy(lg, tg), ("percentages",)),
        (lambda lg, tg: (lg[:, -10:].argmax(-1) == tg[:, -10:]).sum(0), ("float tensor",)),
        (lambda lg, tg: accuracy(lg, tg).tolist(), ("expected a torch.Tensor",)),
    ],
)
def test_copy_accuracy_check_rejects_typical_mistakes(fn, fragments):
    _fails(checks.check_copy_accuracy, fn, *fragments)


def test_copy_accuracy_cases_are_not_degenerate():
    for _, logits, targets in copying._accuracy_cases():
        acc = accuracy(logits, targets)
        assert 0 < float(acc.mean()) < 1  # right sometimes, wrong sometimes


# ------------------------------------------------------------------------------------ nearest resize (07)


def centre(images, size):
    i = torch.arange(size)
    rows = (2 * i + 1) * images.shape[-2] // (2 * size)
    cols = (2 * i + 1) * images.shape[-1] // (2 * size)
    return images[..., rows, :][..., cols]


def test_resize_check_accepts_the_reference_and_the_package(capsys):
    checks.check_resize_nearest(centre)
    checks.check_resize_nearest(resize_nearest)
    out = capsys.readouterr().out
    assert out.count("✔ resize_nearest passed") == 2


def test_resize_check_names_the_mistakes():
    def top_left(images, size):
        return torch.nn.functional.interpolate(images[:, None].float(), size=size, mode="nearest")[:, 0].to(
            images.dtype
        )

    _fails(checks.check_resize_nearest, top_left, "output pixel", "top-left rule")

    def rounded(images, size):
        idx = torch.round(torch.arange(size) * images.shape[-1] / size).long().clamp(max=images.shape[-1] - 1)
        return images[..., idx, :][..., idx]

    _fails(checks.check_resize_nearest, rounded, "rounding|top-left")  # the same at 14x14
    _fails(checks.check_resize_nearest, lambda im, s: centre(im, s).transpose(-2, -1), "transpose")

    def rows_only(images, size):
        i = torch.arange(size)
        return images.index_select(-2, (2 * i + 1) * images.shape[-2] // (2 * size))

    _fails(checks.check_resize_nearest, rows_only, "expected shape", "but not the columns")

    def bilinear(images, size):
        return torch.nn.functional.interpolate(images[:, None].float(), size=size, mode="bilinear")[:, 0]

    _fails(checks.check_resize_nearest, bilinear, "dtype", "do not interpolate")


def test_resize_mistakes_really_differ_from_the_rule():
    images = torch.randint(0, 256, (1, 28, 28), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    for text, make in mnist._mistakes(images, 19):
        assert not torch.equal(make(), resize_nearest(images, 19)), text
