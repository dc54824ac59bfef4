"""What tests of several tasks share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch


def _assert_same_run(first: Path, second: Path) -> None:
    """Two run directories of the same config and seed hold the same metrics and the same final weights, bit for
    bit (the same machine and thread count)."""
    assert json.loads((first / "metrics.json").read_text()) == json.loads((second / "metrics.json").read_text())
    one = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    two = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)
    assert one["global_step"] == two["global_step"] > 0
    assert one["state_dict"].keys() == two["state_dict"].keys()
    for name, value in one["state_dict"].items():
        assert torch.equal(value, two["state_dict"][name]), name


@pytest.fixture
def assert_same_run() -> Callable[[Path, Path], None]:
    return _assert_same_run
