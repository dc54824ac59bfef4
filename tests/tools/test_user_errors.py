"""The tools report a user's mistake as one line on stderr with exit status 2, never a traceback, and run nothing
a hostile file holds. (Every case is tested through the library in tests/common; these check the shell.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _run_tool(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def _the_one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_train_refuses_a_config_whose_yaml_would_run_a_command(tmp_path: Path) -> None:
    marker, config = tmp_path / "marker", tmp_path / "run.yaml"
    config.write_text(f"task: classification\nmodel: !!python/object/apply:os.system ['touch {marker}']\n")

    done = _run_tool("train.py", str(config), "--out", str(tmp_path / "run"), cwd=tmp_path)

    assert _the_one_error_line(done).startswith(f"error: {config}: not valid YAML: line 2, column 8: ")
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_predict_refuses_a_checkpoint_whose_pickle_would_run_code(tmp_path: Path) -> None:
    marker, checkpoint, image = tmp_path / "marker", tmp_path / "evil.ckpt", tmp_path / "cat.jpg"
    torch.save({"state_dict": {}, "hyper_parameters": {"data_info": _Payload(marker)}}, checkpoint)
    Image.new("RGB", (32, 32)).save(image)
    config = tmp_path / "run.yaml"
    config.write_text("task: classification\nmodel:\n  width_mult: 0.25\n")

    done = _run_tool(
        "predict.py",
        str(config),
        "--checkpoint",
        str(checkpoint),
        str(image),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )

    assert _the_one_error_line(done).startswith(f"error: {checkpoint}: refused: its pickle would import or call ")
    assert not marker.exists() and not (tmp_path / "out").exists()
