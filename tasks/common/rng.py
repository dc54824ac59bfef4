"""The process's random streams (Python, numpy, torch CPU and CUDA) as checkpoint values that a weights-only
``torch.load`` reads back (tensors, ints, strings; no numpy objects), so that a resumed run continues them."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["RNG_KEY", "rng_states", "set_rng_states"]

# The checkpoint key that holds them.
RNG_KEY = "rng_states"


def rng_states() -> dict[str, Any]:
    """The current states of every random stream a training step may draw from."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` returned (a stream it did not record is left as it is)."""
    if "python" in states:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(int(value) for value in internal.tolist()), gauss))
    if "numpy" in states:
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
