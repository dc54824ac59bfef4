"""The toolkit's errors, one type per boundary a user's input crosses; the tools report each as one clear line.

``WeightLoadError`` (a weights file that does not fit a backbone) lives in ``backbone``, which knows no task.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "DatasetError", "ImageLoadError", "CheckpointError", "NonFiniteLossError"]


class ConfigError(ValueError):
    """A config file or override is malformed: the message names the file and the dotted key."""


class DatasetError(ValueError):
    """A dataset is malformed or disagrees with its files: the message names the file and the id or line."""


class ImageLoadError(DatasetError):
    """An image file is missing, truncated or not an image."""

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        # A DataLoader worker's error is rebuilt in the main process from its message alone: ``reason`` None.
        super().__init__(f"cannot read image {path}: {reason}" if reason is not None else str(path))
        self.path = str(path)
        self.reason = reason


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or was written for another model."""


class NonFiniteLossError(ArithmeticError):
    """Training produced a NaN or infinite loss: the message names the step and the loss terms. Training stops
    before the next checkpoint, so the last one on disk is the last good one."""
