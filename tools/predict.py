"""Run a trained model on images: DIR/predictions.json, and pictures of the predictions where the task draws them.

python tools/predict.py CONFIG --checkpoint CKPT IMAGE_OR_DIR... --out DIR [--score-threshold T]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tasks.common.build import build_from_checkpoint
from tasks.common.cli import run_tool
from tasks.common.predict import predict_images
from tasks.registry import load_task_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("inputs", nargs="+", help="image files or directories (and dotted.key=value overrides)")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by tools/train.py")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="leave out predictions scored below T (default: detection 0.3; classification lists the top 5)",
    )
    args = parser.parse_intermixed_args(argv)
    overrides = [item for item in args.inputs if "=" in item and not Path(item).exists()]
    inputs = [item for item in args.inputs if item not in overrides]
    config, task = load_task_config(args.config, overrides)
    module = build_from_checkpoint(task, config, args.checkpoint)
    records = predict_images(module, inputs, args.out, score_threshold=args.score_threshold)
    print(f"wrote {len(records)} records ({module.prediction_summary}) to {Path(args.out) / 'predictions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
