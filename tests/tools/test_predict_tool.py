"""tools/predict.py's --score-threshold: refused, in one line naming the task, where predictions have no scores, and
outside 0..1; both before any checkpoint is read or anything is written."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from tasks.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("predict_tool", ROOT / "tools" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


main = _load_tool().main


def test_a_score_threshold_for_face_embeddings_is_refused_naming_the_task(tmp_path: Path) -> None:
    config = ROOT / "configs" / "demo_face_id_teacher.yaml"
    arguments = [str(config), "--checkpoint", str(tmp_path / "none.ckpt"), str(tmp_path), "--out", str(tmp_path / "o")]

    with pytest.raises(ConfigError, match=r"--score-threshold does not apply to the face_embedding task: .*no scores"):
        main([*arguments, "--score-threshold", "0.5"])
    assert not (tmp_path / "o").exists()


def test_a_score_threshold_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    config = ROOT / "configs" / "demo_shapes_ssd.yaml"
    arguments = [str(config), "--checkpoint", str(tmp_path / "none.ckpt"), str(tmp_path), "--out", str(tmp_path / "o")]

    with pytest.raises(ConfigError, match="--score-threshold must be between 0 and 1.*got 30"):
        main([*arguments, "--score-threshold", "30"])
