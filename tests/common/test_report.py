"""tasks.common.report and tools/compare_runs.py: a table of finished runs, the student's share of its teacher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tasks.common.cli import run_tool
from tasks.common.errors import ConfigError
from tasks.common.report import format_runs, summarize_run

REPO = Path(__file__).resolve().parents[2]


def _run(path: Path, config: dict, metrics: dict) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_a_student_is_reported_beside_its_teachers_score(tmp_path: Path) -> None:
    config = {
        "task": "face_attributes",
        "model": {"width_mult": 0.375},
        "data": {"image_size": 64},
        "distill": {"teacher": "t.ckpt"},
    }
    run = _run(tmp_path / "student", config, {"mean_ap": 0.9, "teacher_mean_ap": 0.96})

    summary = summarize_run(run, "mean_ap")

    assert summary["model"] == "mobilenet_v1 0.375-64" and summary["teacher"] == "t.ckpt"
    assert summary["share_of_teacher"] == pytest.approx(0.9 / 0.96)
    line = format_runs([summary]).splitlines()[1]
    assert "0.900" in line and "0.960" in line and "0.938" in line


def test_a_run_without_a_teacher_has_no_share(tmp_path: Path) -> None:
    run = _run(tmp_path / "teacher", {"task": "classification", "model": {}}, {"top1": 0.5})

    summary = summarize_run(run, "top1")

    assert summary["score"] == 0.5 and summary["teacher_score"] is None and summary["share_of_teacher"] is None
    assert format_runs([summary]).splitlines()[1].split()[-2:] == ["-", "-"]


def test_an_unfinished_run_is_named(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("task: classification\n")

    with pytest.raises(ConfigError, match="metrics.json is missing"):
        summarize_run(tmp_path / "run", "top1")


def _tool_main():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("compare_runs", REPO / "tools" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_tool_reads_each_runs_task_for_its_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(
        tmp_path / "faces", {"task": "face_embedding", "model": {}}, {"lfw_accuracy": 0.8, "teacher_lfw_accuracy": 0.9}
    )
    main = _tool_main()

    assert run_tool(main, [str(run), "--json"]) == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["metric"] == "lfw_accuracy" and summary["share_of_teacher"] == pytest.approx(0.8 / 0.9)

    assert run_tool(main, [str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and "nothing" in error
