"""Run a trained model on images: DIR/predictions.json (every prediction), pictures of the predictions where the
task draws them (detection), and what was found printed (each image when few, a summary when many).

python tools/predict.py CONFIG --checkpoint CKPT IMAGE_OR_DIR... --out DIR [--score-threshold T]
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.common.build import build_from_checkpoint
from tasks.common.cli import ToolParser, run_tool
from tasks.common.errors import ConfigError
from tasks.common.files import collect_images
from tasks.common.predict import describe_predictions, predict_images
from tasks.common.task import Task
from tasks.registry import load_task_config


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("inputs", nargs="+", help="image files or directories (and dotted.key=value overrides)")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by tools/train.py")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        metavar="T",
        help="show only predictions scored at least T, in 0..1: the boxes drawn in the pictures (detection, default "
        "0.3) and the classes or attributes printed (classification: default 0, attributes: 0.5). predictions.json "
        "keeps every prediction whatever T (detection: all those above the model's own model.score_threshold). "
        "Refused for face embeddings, which have no scores",
    )
    args = parser.parse_intermixed_args(argv)
    overrides = [item for item in args.inputs if "=" in item and not Path(item).exists()]
    inputs = [item for item in args.inputs if item not in overrides]
    config, task = load_task_config(args.config, overrides)
    _check_score_threshold(args.score_threshold, task)
    module = build_from_checkpoint(task, config, args.checkpoint)
    paths = collect_images(inputs)
    records = predict_images(module, paths, args.out, score_threshold=args.score_threshold)
    for line in describe_predictions(module, paths, records, args.score_threshold):
        print(line)
    print(f"wrote {len(records)} records ({module.prediction_summary}) to {Path(args.out) / 'predictions.json'}")
    return 0


def _check_score_threshold(threshold: float | None, task: Task) -> None:
    if threshold is None:
        return
    if task.module.default_score_threshold is None:
        raise ConfigError(
            f"--score-threshold does not apply to the {task.name} task: its predictions "
            f"({task.module.prediction_summary}) have no scores"
        )
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--score-threshold must be between 0 and 1 (scores are probabilities), got {threshold:g}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
