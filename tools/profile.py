"""Mult-adds and parameters of MobileNetV1 (or of a task config's model), per layer type as in the paper.

python tools/profile.py --width 0.75 --resolution 192 [--variant conv|shallow] [--json] [--per-layer]
python tools/profile.py configs/ssd300_mnv1.yaml [--json] [overrides...]
"""

from __future__ import annotations

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
    from tasks.common.cli import ToolParser, run_tool

# The classifier table's settings: (default, the override that sets the same for a CONFIG).
_CLASSIFIER_OPTIONS = {
    "width": (1.0, "model.width_mult=..."),
    "resolution": (224, "data.image_size=..."),
    "variant": ("separable", "model.separable=false or model.shallow=true"),
    "num_classes": (1000, "model.num_classes=..."),
}


def _parser() -> ToolParser:
    parser = ToolParser(
        prog="profile.py",
        description="Mult-adds and parameters (paper counting: conv and fc layers, no BatchNorm) per layer type.",
        epilog="With CONFIG (.yaml/.yml) the model and input come from the task (tasks.common.build.profile_target); "
        "the remaining arguments are config overrides (dotted.key=value).",
    )
    parser.add_argument("config", nargs="?", help="a task config (.yaml/.yml) to profile instead of the classifier")
    parser.add_argument("overrides", nargs="*", help="config overrides, with CONFIG only")
    parser.add_argument("--width", type=float, help="width multiplier alpha (default 1.0)")
    parser.add_argument("--resolution", type=int, help="input size in pixels (default 224)")
    parser.add_argument(
        "--variant",
        choices=("separable", "conv", "shallow"),
        help="separable (default): MobileNet; conv: every separable layer a full 3x3 conv; shallow: conv7-conv11 "
        "removed",
    )
    parser.add_argument("--num-classes", type=int, help="classes of the fc layer (default 1000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--per-layer", action="store_true", help="list every conv / fc layer (in the JSON too)")
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
    """The command; returns the exit status (a user's mistake raises: ``run_tool`` prints it as one line)."""
    parser = _parser()
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    given = {name: getattr(args, name) for name in _CLASSIFIER_OPTIONS if getattr(args, name) is not None}
    if args.config is None:
        settings = {name: given.get(name, default) for name, (default, _) in _CLASSIFIER_OPTIONS.items()}
        if not (settings["width"] > 0 and settings["resolution"] > 0 and settings["num_classes"] > 0):
            parser.error("--width, --resolution and --num-classes must be positive")
        report = profile_classifier(
            settings["width"], settings["resolution"], settings["variant"], settings["num_classes"]
        )
    else:
        if not args.config.endswith((".yaml", ".yml")):
            parser.error(f"CONFIG must be a .yaml or .yml file, got {args.config!r}")
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            instead = "; ".join(_CLASSIFIER_OPTIONS[name][1] for name in given)
            parser.error(f"{flags}: options of the classifier table, not of a CONFIG; give {instead} after it instead")
        report = profile_config(args.config, args.overrides)
    if args.json:
        print(json.dumps(report.to_dict(per_layer=args.per_layer)))
    else:
        print(report.format_table(per_layer=args.per_layer))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
