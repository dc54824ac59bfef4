"""What the command-line tools share: user errors become one clear line and exit status 2, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from backbone import WeightLoadError
from tasks.common.errors import CheckpointError, ConfigError, DatasetError, NonFiniteLossError

# Errors a user causes (bad config, path, file, checkpoint, weights): reported as one line.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointError,
    DatasetError,
    WeightLoadError,
    NonFiniteLossError,
    FileNotFoundError,
)


def run_tool(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    try:
        return main(argv) or 0
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
