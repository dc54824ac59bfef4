"""One table over several finished runs: each run's model, its score on the task's monitored metric and, for a
distilled student, its teacher's score on the same data and the student's share of it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tasks.common.errors import ConfigError

__all__ = ["RunSummary", "format_runs", "summarize_run"]


RunSummary = dict[str, Any]


def summarize_run(run_dir: str | Path, monitor: str) -> RunSummary:
    """What ``format_runs`` prints of one run directory (config.yaml and metrics.json, as tools/train.py and
    tools/distill.py write them); ``monitor`` is the task's monitored metric without its ``val/`` prefix."""
    run_dir = Path(run_dir)
    config_file, metrics_file = run_dir / "config.yaml", run_dir / "metrics.json"
    for path in (config_file, metrics_file):
        if not path.is_file():
            raise ConfigError(f"{run_dir} is not a finished run: {path.name} is missing")
    config = yaml.safe_load(config_file.read_text()) or {}
    metrics = json.loads(metrics_file.read_text())
    model = config.get("model") or {}
    backbone = model.get("backbone", "mobilenet_v1")
    width = model.get("width_mult")
    size = (config.get("data") or {}).get("image_size")
    description = f"{backbone}{'' if width is None else f' {width:g}'}{'' if size is None else f'-{size}'}"
    score, teacher = metrics.get(monitor), metrics.get(f"teacher_{monitor}")
    ratio = score / teacher if isinstance(score, float) and isinstance(teacher, float) and teacher > 0 else None
    teacher_spec = (config.get("distill") or {}).get("teacher")
    return {
        "run": str(run_dir),
        "task": config.get("task"),
        "model": description,
        "metric": monitor,
        "score": score,
        "teacher_score": teacher,
        "share_of_teacher": ratio,
        "teacher": teacher_spec,
    }


def format_runs(summaries: Sequence[RunSummary]) -> str:
    """A plain-text table, one line per run."""

    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    header = ("run", "task", "model", "metric", "score", "teacher", "student/teacher")
    rows = [
        (
            s["run"],
            s["task"] or "?",
            s["model"],
            s["metric"],
            number(s["score"]),
            number(s["teacher_score"]),
            number(s["share_of_teacher"]),
        )
        for s in summaries
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows])
