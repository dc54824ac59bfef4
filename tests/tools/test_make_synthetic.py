"""tools/make_synthetic.py: it replaces only its own earlier output, entirely, and refuses any other folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tasks.common.cli import run_tool
from tasks.common.files import GENERATED_MARK

REPO = Path(__file__).resolve().parents[2]


def _main():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_synthetic_tool", REPO / "tools" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_regenerating_replaces_its_own_output_without_leftovers(tmp_path: Path) -> None:
    main = _main()
    assert run_tool(main, ["folder", "--out", str(tmp_path / "faces"), "--train", "5"]) == 0
    assert run_tool(main, ["folder", "--out", str(tmp_path / "faces"), "--train", "2", "--seed", "1"]) == 0

    assert sorted(p.name for p in (tmp_path / "faces").glob("*.jpg")) == ["face_000001.jpg", "face_000002.jpg"]
    assert json.loads((tmp_path / "faces" / GENERATED_MARK).read_text())["train"] == 2


def test_a_folder_it_did_not_write_is_refused_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "celeba"
    dataset.mkdir()
    (dataset / "list_attr_celeba.txt").write_text("the user's own file")

    assert run_tool(_main(), ["celeba", "--out", str(dataset)]) == 2

    assert "did not write" in capsys.readouterr().err
    assert [p.name for p in dataset.iterdir()] == ["list_attr_celeba.txt"]
    assert (dataset / "list_attr_celeba.txt").read_text() == "the user's own file"


def test_a_negative_count_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        _main()(["coco", "--out", str(tmp_path / "x"), "--train", "-3"])
    assert stop.value.code == 2 and "--train must be at least 1, got -3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_reuse_keeps_an_output_of_the_same_settings_only(tmp_path: Path) -> None:
    main, out = _main(), tmp_path / "faces"
    assert run_tool(main, ["folder", "--out", str(out), "--train", "3"]) == 0
    written = (out / "face_000001.jpg").stat().st_mtime_ns

    assert run_tool(main, ["folder", "--out", str(out), "--train", "3", "--reuse"]) == 0
    assert (out / "face_000001.jpg").stat().st_mtime_ns == written
    assert run_tool(main, ["folder", "--out", str(out), "--train", "2", "--reuse"]) == 0
    assert len(list(out.glob("*.jpg"))) == 2


def test_reuse_regenerates_an_output_drawn_with_other_generator_defaults(tmp_path: Path) -> None:
    # The same command line, but a generator default (here the image size) changed since the folder was written.
    main, out = _main(), tmp_path / "faces"
    assert run_tool(main, ["folder", "--out", str(out), "--train", "2"]) == 0
    mark = json.loads((out / GENERATED_MARK).read_text())
    assert mark["generator"] == {"seed": 0, "count": 2, "size": [96, 112]}
    mark["generator"]["size"] = [64, 64]
    (out / GENERATED_MARK).write_text(json.dumps(mark))
    (out / "face_000001.jpg").write_bytes(b"stale")

    assert run_tool(main, ["folder", "--out", str(out), "--train", "2", "--reuse"]) == 0
    assert (out / "face_000001.jpg").read_bytes() != b"stale"
    assert json.loads((out / GENERATED_MARK).read_text())["generator"]["size"] == [96, 112]


def test_the_makefile_generates_each_demo_dataset_through_reuse_in_its_own_folder() -> None:
    # --reuse is what checks a demo folder's recorded settings: a demo never trains on a set of other settings.
    lines = [line for line in (REPO / "Makefile").read_text().splitlines() if "tools/make_synthetic.py" in line]
    outs = [line.split("--out", 1)[1].split()[0] for line in lines]

    assert len(lines) >= 5 and all("--reuse" in line for line in lines)
    assert len(set(outs)) == len(outs)


def test_an_interrupted_generation_is_replaced_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C halfway through make demo's data: the next make demo regenerates the folder instead of refusing it.
    spec = importlib.util.spec_from_file_location("make_synthetic_tool", REPO / "tools" / "make_synthetic.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out, write = tmp_path / "faces", tool.make_unlabeled_faces

    def interrupted(folder: Path, **kwargs: object) -> None:
        (Path(folder) / "face_000001.jpg").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(tool, "make_unlabeled_faces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tool.main(["folder", "--out", str(out), "--train", "2", "--reuse"])
    monkeypatch.setattr(tool, "make_unlabeled_faces", write)

    assert run_tool(tool.main, ["folder", "--out", str(out), "--train", "2", "--reuse"]) == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["face_000001.jpg", "face_000002.jpg"]
    assert (out / "face_000001.jpg").read_bytes() != b"half"
    assert "unfinished" not in json.loads((out / GENERATED_MARK).read_text())
