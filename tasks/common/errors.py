"""Errors every task's data code raises, so the tools can report them as one clear line."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset is malformed or disagrees with its files: the message names the file and the id or line."""
