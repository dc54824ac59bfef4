"""Train a task from one YAML config.

python tools/train.py configs/ssd300_mnv1.yaml [--out DIR] [--resume] [dotted.key=value ...]
"""

from __future__ import annotations

import json
import sys
import time

from tasks.common.cli import ToolParser, run_tool
from tasks.common.runner import train
from tasks.registry import load_task_config


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("config", help="run config (YAML)")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. trainer.max_epochs=1")
    parser.add_argument("--out", help="run directory (default runs/<config name>/<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="continue from --out DIR/checkpoints/last.ckpt")
    args = parser.parse_intermixed_args(argv)
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR")
    start = time.perf_counter()
    config, task = load_task_config(args.config, args.overrides)
    run_dir = train(task, config, out=args.out, resume=args.resume)
    print(f"training and final validation took {(time.perf_counter() - start) / 60:.1f} min")
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        print(f"run directory: {run_dir}")
        print(json.dumps(json.loads(metrics_file.read_text()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
