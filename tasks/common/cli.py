"""What the command-line tools share: user errors become one clear line and exit status 2, not a traceback."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

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


class ToolParser(argparse.ArgumentParser):
    """The tools' argument parser: a mistake is one ``error:`` line and exit status 2, and an option it does not know
    is named, with the closest one it does (``--checkpont``: did you mean ``--checkpoint``?), before anything else is
    parsed: argparse would otherwise report a required option missing, or take it for a positional override."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.option_names: list[str] = []  # filled by add_argument, which argparse's own __init__ calls for --help
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.option_names.extend(action.option_strings)
        return action

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        return super().parse_args(self._refuse_unknown_options(args), namespace)

    def parse_intermixed_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        return super().parse_intermixed_args(self._refuse_unknown_options(args), namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def _refuse_unknown_options(self, args: Sequence[str] | None) -> list[str]:
        args = list(sys.argv[1:] if args is None else args)
        for arg in args:
            if arg == "--":
                break
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if not arg.startswith("-") or arg == "-" or _is_number(arg) or self._known(name):
                continue
            close = difflib.get_close_matches(name, self.option_names, n=1)
            self.error(f"unrecognized argument {name}" + (f" (did you mean {close[0]}?)" if close else ""))
        return args

    def _known(self, name: str) -> bool:
        if name in self.option_names:
            return True
        # argparse's own abbreviations (--check for --checkpoint); an ambiguous one is left for argparse to name.
        return self.allow_abbrev and name.startswith("--") and any(o.startswith(name) for o in self.option_names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run_tool(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """``main(argv)``'s exit status; a user's error (``USER_ERRORS``) is printed as one ``error:`` line, status 2."""
    try:
        return main(argv) or 0
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
