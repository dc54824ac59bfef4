"""Compare finished runs: each run's model and score on its task's monitored metric, and for a distilled student
its teacher's score on the same data and the student's share of it.

python tools/compare_runs.py RUN_DIR [RUN_DIR ...] [--json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from tasks.common.cli import ToolParser, run_tool
from tasks.common.errors import ConfigError
from tasks.common.report import format_runs, summarize_run
from tasks.registry import get_task


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories written by tools/train.py or tools/distill.py")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    args = parser.parse_args(argv)
    summaries = []
    for run in args.runs:
        config_file = Path(run) / "config.yaml"
        if not config_file.is_file():
            raise ConfigError(f"{run} is not a run directory: no config.yaml")
        task = get_task((yaml.safe_load(config_file.read_text()) or {}).get("task"), config_file)
        summaries.append(summarize_run(run, task.module.monitor.removeprefix("val/")))
    print(json.dumps(summaries, indent=2) if args.json else format_runs(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
