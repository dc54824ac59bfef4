"""Run a trained model on images: annotated pictures (detection) and DIR/predictions.json.

python tools/predict.py CONFIG --checkpoint CKPT IMAGE_OR_DIR... --out DIR [--score-threshold T]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running tools/X.py puts tools/ first on sys.path, where profile.py would shadow the standard library's profile
# module (imported by torch): drop that entry before importing anything else.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse

from tasks.common.build import build_from_checkpoint
from tasks.common.cli import run_tool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("inputs", nargs="+", help="image files or directories (and dotted.key=value overrides)")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by tools/train.py")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="detections below are not drawn")
    args = parser.parse_intermixed_args(argv)
    overrides = [item for item in args.inputs if "=" in item and not Path(item).exists()]
    inputs = [item for item in args.inputs if item not in overrides]
    task, module = build_from_checkpoint(args.config, args.checkpoint, overrides)
    records = task.predict(module, inputs, args.out, score_threshold=args.score_threshold)
    written = Path(args.out) / "predictions.json"
    print(f"wrote {len(records)} records ({task.predict_summary}) to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
