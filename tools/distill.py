"""Distil a teacher into the model of a run config (a student of any distillable task).

python tools/distill.py CONFIG --teacher TEACHER [--teacher-weights PATH] [--cache-teacher] [--out DIR] [--resume]
                        [dotted.key=value ...]

TEACHER: a checkpoint written by tools/train.py or tools/distill.py, timm:NAME (with --teacher-weights, a local
timm state dict or safetensors file), or an .onnx file (then distill.teacher_image_size, teacher_mean and
teacher_std are required). With --resume and no --teacher, the teacher recorded in the run's config.yaml.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import yaml

from tasks.common.cli import ToolParser, run_tool
from tasks.distillation.runner import distill
from tasks.registry import TASKS, load_task_config


def main(argv: list[str] | None = None) -> int:
    parser = ToolParser(description=__doc__)
    parser.add_argument("config", help="run config (YAML) of the student")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. distill.temperature=2")
    parser.add_argument("--teacher", help="checkpoint, timm:NAME or .onnx file")
    parser.add_argument("--teacher-weights", help="a local weights file for timm:NAME")
    parser.add_argument("--cache-teacher", action="store_true", help="compute the teacher's outputs once per image")
    parser.add_argument("--out", help="run directory (default runs/<config name>/<timestamp>)")
    parser.add_argument("--resume", action="store_true", help="continue from --out DIR/checkpoints/last.ckpt")
    args = parser.parse_intermixed_args(argv)
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR")
    config, task = load_task_config(args.config, args.overrides)
    settings = config.setdefault("distill", {})
    if args.resume and not args.teacher:
        saved = Path(args.out) / "config.yaml"
        if saved.is_file():
            recorded = (yaml.safe_load(saved.read_text()) or {}).get("distill") or {}
            settings.setdefault("teacher", recorded.get("teacher"))
            settings.setdefault("teacher_weights", recorded.get("teacher_weights"))
    for key, value in (("teacher", args.teacher), ("teacher_weights", args.teacher_weights)):
        if value is not None:
            settings[key] = value
    if args.cache_teacher:
        settings["cache_teacher"] = True
    start = time.perf_counter()
    run_dir = distill(task, config, TASKS, out=args.out, resume=args.resume)
    print(f"distillation and final validation took {(time.perf_counter() - start) / 60:.1f} min")
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        print(f"run directory: {run_dir}")
        print(json.dumps(json.loads(metrics_file.read_text()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
