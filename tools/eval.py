"""Evaluate a checkpoint on the config's validation data; writes DIR/metrics.json (and predictions.json).

python tools/eval.py CONFIG --checkpoint CKPT [--out DIR] [dotted.key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running tools/X.py puts tools/ first on sys.path, where profile.py would shadow the standard library's profile
# module (imported by torch): drop that entry before importing anything else.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import json

from tasks.common.cli import run_tool
from tasks.common.runner import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. data.root=DIR")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by tools/train.py")
    parser.add_argument("--out", help="output directory (default: <run>/eval beside the checkpoint's run)")
    args = parser.parse_intermixed_args(argv)
    metrics = evaluate(args.config, args.checkpoint, args.overrides, out=args.out)
    if metrics:
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
