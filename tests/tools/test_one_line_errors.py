"""A user's mistake, through each tool's main() as its shell runs it (``run_tool``): one ``error:`` line naming the
key, file or value and what would be valid, exit status 2, and nothing written to disk."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import torch

from tasks.classification.synthetic import make_synthetic_dogs
from tasks.common.cli import run_tool
from tasks.detection.synthetic import make_shapes_coco

REPO = Path(__file__).resolve().parents[2]
DOGS_CONFIG = str(REPO / "configs" / "demo_dogs.yaml")
TINY = ["model.width_mult=0.25", "data.image_size=32", "data.num_workers=0", "trainer.max_epochs=1"]


@cache
def _main(tool: str) -> Callable[[list[str] | None], int]:
    spec = importlib.util.spec_from_file_location(f"{tool}_tool", REPO / "tools" / f"{tool}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _refused(tool: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line ``tools/<tool>.py args`` prints on stderr; its exit status must be 2 (argparse's SystemExit or
    run_tool's status)."""
    try:
        status = run_tool(_main(tool), args)
    except SystemExit as stop:
        status = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def dogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Stanford Dogs: 2 breeds, one train and one test image each."""
    return make_synthetic_dogs(
        tmp_path_factory.mktemp("dogs"), num_train=1, num_val=1, num_breeds=2, size_range=(32, 40)
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder, where a run without --out would create runs/<config>/<time>."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _nothing_written(folder: Path) -> None:
    assert list(folder.iterdir()) == [], list(folder.iterdir())


# --- tools/profile.py


def test_profile_names_a_misspelled_override_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused("profile", [DOGS_CONFIG, "model.widht_mult=0.5"], capsys)
    assert line.startswith(
        "error: override model.widht_mult=0.5: unknown key model.widht_mult (did you mean width_mult"
    )


def test_profile_run_as_a_script_names_a_missing_config_file_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["tools/profile.py", "configs/nope.yaml"])
    with pytest.raises(SystemExit) as stop:  # what ``python tools/profile.py configs/nope.yaml`` runs
        runpy.run_path(str(REPO / "tools" / "profile.py"), run_name="__main__")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: config file not found: configs/nope.yaml\n"


def test_profile_refuses_a_classifier_option_after_a_config_saying_what_to_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _refused("profile", [DOGS_CONFIG, "--width", "0.5"], capsys)
    assert "--width: options of the classifier table, not of a CONFIG; give model.width_mult=..." in line
    assert "unrecognized argument --widht" in _refused("profile", [DOGS_CONFIG, "--widht", "0.5"], capsys)


# --- tools/train.py: refused before the run directory exists


def test_a_batch_size_of_zero_is_one_line_before_any_run_folder(
    dogs: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused("train", [DOGS_CONFIG, f"data.root={dogs}", *TINY, "data.batch_size=0"], capsys)
    assert "data.batch_size" in line and ">= 1, got 0" in line
    _nothing_written(workdir)


def test_a_width_the_backbone_refuses_is_one_line_naming_the_override(
    dogs: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused("train", [DOGS_CONFIG, f"data.root={dogs}", *TINY, "model.width_mult=-1"], capsys)
    assert line == "error: override model.width_mult=-1: model.width_mult must be positive, got -1"
    _nothing_written(workdir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the run would start")
def test_a_gpu_accelerator_on_a_machine_without_one_is_one_line_before_any_run_folder(
    dogs: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused("train", [DOGS_CONFIG, f"data.root={dogs}", *TINY, "trainer.accelerator=gpu"], capsys)
    assert line.startswith("error: override trainer.accelerator=gpu: Lightning refuses it: No supported gpu backend")
    assert "trainer.accelerator=cpu" in line
    _nothing_written(workdir)


# --- tools/make_synthetic.py, tools/eval.py


def test_make_synthetic_refuses_a_negative_count_in_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused("make_synthetic", ["coco", "--out", "x", "--train", "-3"], capsys)
    assert line.startswith("error: --train must be at least 1, got -3")
    _nothing_written(workdir)


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "notes.ckpt").write_text("my notes\n")

    line = _refused("eval", [DOGS_CONFIG, "--checkpoint", "notes.ckpt", "--out", "eval"], capsys)

    assert line.startswith("error: notes.ckpt is not a checkpoint: it starts with b'my n'")
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.ckpt"]


def test_a_truncated_checkpoint_is_reported_in_whole_sentences(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save({"state_dict": {"w": torch.zeros(4096)}}, workdir / "c.ckpt")
    (workdir / "c.ckpt").write_bytes((workdir / "c.ckpt").read_bytes()[:2000])

    line = _refused("eval", [DOGS_CONFIG, "--checkpoint", "c.ckpt", "--out", "eval"], capsys)

    # torch's message goes on with advice on unsafe loading, which used to be cut mid-sentence
    assert line.startswith("error: cannot read checkpoint c.ckpt (truncated or corrupt?): RuntimeError: ")
    assert line.endswith("failed finding central directory"), line


# --- a misspelled option is named, not taken for an override or a missing required one


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("eval", [DOGS_CONFIG, "--checkpont", "x.ckpt"]),
        ("predict", [DOGS_CONFIG, "image.jpg", "--checkpont", "x.ckpt", "--out", "o"]),
        ("train", [DOGS_CONFIG, "--outt", "o"]),
    ],
)
def test_a_misspelled_option_is_named_with_the_closest_one(
    tool: str, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(tool, args, capsys)
    wrong, right = ("--outt", "--out") if tool == "train" else ("--checkpont", "--checkpoint")
    assert line.startswith(f"error: unrecognized argument {wrong} (did you mean {right}?)"), line


def test_a_training_set_unreadable_once_the_run_folder_exists_leaves_no_folder_behind(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # The detection data module reads its training annotations in setup("fit"), after the run folder is made.
    root = make_shapes_coco(tmp_path_factory.mktemp("shapes"), num_train=2, num_val=2, seed=0)
    (root / "annotations" / "instances_train2017.json").write_text("{ not json")
    config = str(REPO / "configs" / "demo_shapes_ssd.yaml")

    line = _refused("train", [config, f"data.root={root}", "data.num_workers=0", "model.width_mult=0.25"], capsys)

    assert "instances_train2017.json" in line
    _nothing_written(workdir)
