"""The check of notebook 07 (the nearest-neighbour resize with the pixel-centre rule) names each mistake."""

from __future__ import annotations

import torch
from helpers import load_fixture

from minirims.course import checks
from minirims.course.checks import mnist
from minirims.experiments.data.mnist import resize_nearest

answers = load_fixture("check_answers")
fails, centre = answers.fails, answers.resize_nearest


def test_resize_check_accepts_the_package_too(capsys):
    checks.check_resize_nearest(centre)
    checks.check_resize_nearest(resize_nearest)
    assert capsys.readouterr().out.count("✔ resize_nearest passed") == 2


def test_resize_check_names_the_mistakes():
    def top_left(images, size):
        resized = torch.nn.functional.interpolate(images[:, None].float(), size=size, mode="nearest")
        return resized[:, 0].to(images.dtype)

    fails(checks.check_resize_nearest, top_left, "output pixel", "top-left rule")

    def rounded(images, size):
        idx = torch.round(torch.arange(size) * images.shape[-1] / size).long().clamp(max=images.shape[-1] - 1)
        return images[..., idx, :][..., idx]

    fails(checks.check_resize_nearest, rounded, "rounding|top-left")  # the same at 14x14
    fails(checks.check_resize_nearest, lambda im, s: centre(im, s).transpose(-2, -1), "transpose")

    def rows_only(images, size):
        i = torch.arange(size)
        return images.index_select(-2, (2 * i + 1) * images.shape[-2] // (2 * size))

    fails(checks.check_resize_nearest, rows_only, "expected shape", "but not the columns")

    def bilinear(images, size):
        return torch.nn.functional.interpolate(images[:, None].float(), size=size, mode="bilinear")[:, 0]

    fails(checks.check_resize_nearest, bilinear, "dtype", "do not interpolate")


def test_resize_mistakes_really_differ_from_the_rule():
    images = torch.randint(0, 256, (1, 28, 28), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    for text, make in mnist._mistakes(images, 19):
        assert not torch.equal(make(), resize_nearest(images, 19)), text
