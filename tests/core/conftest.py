"""Fixtures of the core's tests: every behaviour of the RIM is tested on both of its paths.

``RIM(fast=False)`` steps :class:`~minirims.cell.RIMCell` (the plain path the course builds); ``RIM()`` runs
the fused loop of :mod:`minirims.fast`. A test that takes ``make_rim`` (or ``path``) runs once per path, as
``test_x[plain]`` and ``test_x[fused]``; the tests that compare the two paths with each other live in
``test_fast.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from minirims.cell import RIMCell, RIMState
from minirims.model import RIM

#: a small RIM: 6 modules, 4 active. With d_in = 5 one input slot folds W_v into W_ih (5 <= d_v = 6) and
#: three do not (15 > 6), so the fused path's two reads are both exercised.
SMALL = dict(
    n_modules=6, k_active=4, d_hidden=8, input_d_k=4, input_d_v=6, comm_heads=2, comm_d_k=3, comm_d_v=5
)


@pytest.fixture(params=["plain", "fused"])
def path(request: pytest.FixtureRequest) -> str:
    """Which implementation of the RIM a test runs: "plain" (``fast=False``) or "fused" (``fast=True``)."""
    return request.param


@pytest.fixture
def make_rim(path: str) -> Callable[..., RIM]:
    """``make_rim(d_in=5, seed=0, dtype=float64, dropout=0.0, **sizes)``: a seeded RIM on the test's path.

    Sizes default to :data:`SMALL`; the RIM is in evaluation mode (call ``.train()`` for dropout).
    """

    def build(d_in: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64, dropout: float = 0.0, **kw):
        torch.manual_seed(seed)
        rim = RIM(d_in, fast=path == "fused", dropout=dropout, **{**SMALL, **kw})
        return rim.to(dtype).eval()

    return build


@pytest.fixture
def make_cell() -> Callable[..., RIMCell]:
    """``make_cell(rnn="lstm")``: a seeded float64 :class:`RIMCell` of :data:`SMALL` sizes on 5 features, no
    dropout, in evaluation mode (the cell has one path: it is what the plain path steps)."""

    def build(rnn: str = "lstm") -> RIMCell:
        torch.manual_seed(0)
        return RIMCell(5, rnn=rnn, dropout=0.0, **SMALL).to(torch.float64).eval()

    return build


@pytest.fixture
def random_state() -> Callable[..., RIMState]:
    """``random_state(rim_or_cell, b, seed=1)``: a random RIMState, h and c (B, n, d_h), in its dtype."""

    def build(model: RIM | RIMCell, b: int, seed: int = 1) -> RIMState:
        cell = getattr(model, "cell", model)
        g = torch.Generator().manual_seed(seed)
        dtype = cell.rnn.weight_hh.dtype
        shape = (b, cell.n_modules, cell.d_hidden)
        h = torch.randn(*shape, generator=g, dtype=dtype)
        c = torch.randn(*shape, generator=g, dtype=dtype) if cell.rnn_type == "lstm" else None
        return RIMState(h, c)

    return build
