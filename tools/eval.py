"""Evaluate a checkpoint on the config's validation data; writes DIR/metrics.json (and the task's outputs).

python tools/eval.py CONFIG --checkpoint CKPT [--out DIR] [--overwrite] [dotted.key=value ...]
"""

from __future__ import annotations

import json
import sys

from tasks.common.cli import ToolParser, run_tool
from tasks.common.runner import eval_dir, evaluate
from tasks.registry import load_task_config


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. data.root=DIR")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by tools/train.py")
    parser.add_argument("--out", help="output directory (default: <run>/eval beside the checkpoint's run)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results a folder already holds")
    args = parser.parse_intermixed_args(argv)
    config, task = load_task_config(args.config, args.overrides)
    metrics = evaluate(task, config, args.checkpoint, out=args.out, overwrite=args.overwrite)
    if metrics:
        print(json.dumps(metrics, indent=2))
    out = eval_dir(args.checkpoint, args.out)
    if (out / "metrics.json").is_file():
        beside = sorted(f"{p.name}/" if p.is_dir() else p.name for p in out.iterdir() if p.name != "metrics.json")
        print(f"wrote {out / 'metrics.json'}" + (f"; beside it: {', '.join(beside)}" if beside else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
