"""MNIST's classifier reads its tokens' values on the CPU only: on a GPU the read is a host sync per batch."""

from __future__ import annotations

import pytest
import torch

from minirims.experiments import mnist_resolution as mr


@pytest.mark.parametrize("name", ["rim-6x12-k4", "lstm-72"])
def test_token_values_are_read_on_the_cpu_only(name, monkeypatch):
    model = mr.make_model(name, mr.settings("smoke"))
    bad = r"^tokens: expected pixel tokens in \{0, 1\}, got values in \[0, 2\]$"
    with pytest.raises(ValueError, match=bad):
        model(torch.tensor([[0, 1, 2]]))
    # off the CPU (a meta tensor stands in for a GPU one) the values are never read back to the host
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: pytest.fail("read token values off the CPU"))
    logits = model.to("meta")(torch.zeros(2, 5, dtype=torch.long, device="meta"))
    assert logits.shape == (2, 10) and logits.device.type == "meta"
    with pytest.raises(ValueError, match=r"^tokens: expected shape \(B, T\) of integer tokens"):
        model(torch.zeros(2, 5, device="meta"))  # the metadata is still checked everywhere
