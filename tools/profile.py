"""Mult-adds and parameters of MobileNetV1 (or of a task config's model), per layer type as in the paper.

python tools/profile.py --width 0.75 --resolution 192 [--variant conv|shallow] [--json] [--per-layer]
python tools/profile.py configs/ssd300_mnv1.yaml [--json] [overrides...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence


def _hand_over_to_stdlib_profile() -> None:
    """Put the standard library's ``profile`` in ``sys.modules`` in place of this file.

    Running any ``python tools/X.py`` puts tools/ first on sys.path, where this file shadows the standard library's
    ``profile``, which cProfile imports (and torch and Lightning import cProfile). An import statement returns what
    ``sys.modules`` holds once the file has run, so the importer gets the standard library's module.
    """
    spec = importlib.util.spec_from_file_location("profile", os.path.join(sysconfig.get_path("stdlib"), "profile.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile"] = module
    spec.loader.exec_module(module)


if __name__ == "profile":
    _hand_over_to_stdlib_profile()
else:
    from backbone.cost import CostReport, profile_classifier, profile_model

_FLAGS = ("--json", "--per-layer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profile.py",
        description="Mult-adds and parameters (paper counting: conv and fc layers, no BatchNorm) per layer type.",
        epilog="With CONFIG (.yaml/.yml) the model and input come from the task (tasks.common.build.profile_target); "
        "the remaining arguments are config overrides (dotted.key=value).",
    )
    parser.add_argument("config", nargs="?", help="a task config (.yaml/.yml) to profile instead of the classifier")
    parser.add_argument("overrides", nargs="*", help="config overrides, with CONFIG only")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier alpha (default 1.0)")
    parser.add_argument("--resolution", type=int, default=224, help="input size in pixels (default 224)")
    parser.add_argument(
        "--variant",
        choices=("separable", "conv", "shallow"),
        default="separable",
        help="separable: MobileNet; conv: every separable layer a full 3x3 conv; shallow: conv7-conv11 removed",
    )
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--per-layer", action="store_true", help="list every conv / fc layer in the table")
    return parser


def profile_config(path: str, overrides: Sequence[str] = ()) -> CostReport:
    """The cost of a task config's model on the task's example input (no dataset needed)."""
    # Imported here rather than above: the classifier table needs only backbone/, not the tasks and Lightning.
    from tasks.common.build import profile_target
    from tasks.registry import load_task_config

    config, task = load_task_config(path, list(overrides))
    model, example_inputs, description = profile_target(task, config)
    return profile_model(model, example_inputs, description)


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    config = next((a for a in argv if not a.startswith("-") and a.endswith((".yaml", ".yml"))), None)
    if config is None:
        args = parser.parse_args(argv)
        if args.config is not None or args.overrides:
            parser.error(f"CONFIG must be a .yaml or .yml file, got {args.config!r}")
        if not (args.width > 0 and args.resolution > 0 and args.num_classes > 0):
            parser.error("--width, --resolution and --num-classes must be positive")
        report = profile_classifier(args.width, args.resolution, args.variant, args.num_classes)
    else:
        rest = [a for a in argv if a != config]
        args = parser.parse_args([a for a in rest if a in _FLAGS])
        report = profile_config(config, [a for a in rest if a not in _FLAGS])
    print(json.dumps(report.to_dict()) if args.json else report.format_table(per_layer=args.per_layer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
