"""tools/train.py, eval.py and predict.py end to end on a tiny COCO-format set, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO

from tasks.detection.synthetic import make_shapes_coco

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "demo_shapes_ssd.yaml"
TINY = [
    "min_steps=0",  # the demo config lengthens a run on a small set
    "model.image_size=128",
    "model.score_threshold=0.001",  # an untrained model scores objects near the background prior's 1%
    "data.image_size=128",
    "data.batch_size=4",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]

pytestmark = pytest.mark.slow


DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]


def run_tool(tool: str, *args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *args], capture_output=True, text=True, cwd=cwd, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    # 7 validation images: two processes of batch 4 must pad, which must not count twice.
    return make_shapes_coco(tmp_path_factory.mktemp("shapes"), num_train=8, num_val=7, seed=3)


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    run_tool("train.py", str(CONFIG), "--out", str(run_dir), f"data.root={shapes}", *TINY)
    return run_dir


@pytest.mark.slow
def test_a_rerun_with_the_same_seed_ends_with_the_same_weights_and_metrics(
    trained: Path, shapes: Path, tmp_path: Path, assert_same_run
) -> None:
    # Augmented (the demo config flips) and shuffled: every random draw follows the seed.
    run_tool("train.py", str(CONFIG), "--out", str(tmp_path), f"data.root={shapes}", *TINY)

    assert_same_run(trained, tmp_path)


def test_train_writes_run_directory(trained: Path) -> None:
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert list((trained / "checkpoints").glob("best-*.ckpt"))
    assert (trained / "logs" / "metrics.csv").is_file()
    saved = (trained / "config.yaml").read_text()
    assert "image_size: 128" in saved and "width_mult: 0.25" in saved


def test_train_metrics_json_has_the_eval_keys(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "num_images"):
        assert key in metrics
    assert metrics["num_images"] == 7


def test_eval_writes_metrics_and_loadable_coco_predictions(trained: Path, shapes: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    done = run_tool(
        "eval.py", str(CONFIG), "--checkpoint", str(ckpt), "--out", str(tmp_path), f"data.root={shapes}", *TINY
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_images"] == 7
    # Beside coco_eval.txt: the precision-recall curves and the validation pictures, and the tool says where.
    assert (tmp_path / "pr_curves.png").is_file() and (tmp_path / "coco_eval.txt").is_file()
    assert len(list((tmp_path / "pictures").glob("*.jpg"))) == 7
    assert done.stdout.strip().splitlines()[-1] == (
        f"wrote {tmp_path / 'metrics.json'}; beside it: coco_eval.txt, pictures/, pr_curves.png, predictions.json"
    )
    gt = COCO(str(shapes / "annotations" / "instances_val2017.json"))
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions, "with score threshold 0.001 even an untrained SSD proposes boxes"
    results = gt.loadRes(predictions)  # raises on unknown image ids
    assert {p["category_id"] for p in predictions} <= set(gt.getCatIds())
    assert set(results.getImgIds()) <= set(gt.getImgIds())


def test_two_process_ddp_eval_counts_each_image_once(trained: Path, shapes: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    run_tool(
        "eval.py", str(CONFIG), "--checkpoint", str(ckpt), "--out", str(tmp_path), f"data.root={shapes}", *TINY, *DDP
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_images"] == 7
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    per_image: dict[int, int] = {}
    for p in predictions:
        per_image[p["image_id"]] = per_image.get(p["image_id"], 0) + 1
    assert max(per_image.values()) <= 100  # a repeated image would double its detections past the cap


def test_two_process_ddp_training_writes_one_default_run_directory(shapes: Path, tmp_path: Path) -> None:
    # The second rank is a new process started seconds later: it must not pick a run directory of its own.
    run_tool("train.py", str(CONFIG), f"data.root={shapes}", *TINY, *DDP, cwd=tmp_path)
    runs = list((tmp_path / "runs" / CONFIG.stem).iterdir())
    assert len(runs) == 1, runs
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((runs[0] / "metrics.json").read_text())["num_images"] == 7


def test_predict_draws_pictures_and_writes_records_never_over_an_input(
    trained: Path, shapes: Path, tmp_path: Path
) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    images = []
    for source in sorted((shapes / "val2017").glob("*.jpg"))[:2]:  # the user's photos, and --out their folder
        images.append(tmp_path / source.name)
        images[-1].write_bytes(source.read_bytes())
    originals = {path: path.read_bytes() for path in images}
    done = run_tool(
        "predict.py",
        str(CONFIG),
        "--checkpoint",
        str(ckpt),
        *map(str, images),
        "--out",
        str(tmp_path),
        "--score-threshold",
        "0.9",
        *TINY,
    )
    assert all(path.read_bytes() == data for path, data in originals.items())
    drawn = sorted(p.name for p in tmp_path.glob("*.jpg") if p not in originals)
    assert drawn == sorted(f"{p.stem}_pred.jpg" for p in images)
    records = json.loads((tmp_path / "predictions.json").read_text())
    assert records and set(records[0]) == {"file", "bbox", "category_id", "category", "score"}
    assert records[0]["category"] in {"circle", "square", "triangle", "star"}
    # The threshold is the pictures' and the printout's: the file keeps what the model scored below it.
    assert any(record["score"] < 0.9 for record in records)
    lines = done.stdout.strip().splitlines()
    assert [line.split(": ")[0] for line in lines[:2]] == list(map(str, images))


def test_resume_continues_at_the_same_step_and_keeps_the_history(shapes: Path, tmp_path: Path) -> None:
    run_tool("train.py", str(CONFIG), "--out", str(tmp_path), f"data.root={shapes}", *TINY)
    first = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    first_log = (tmp_path / "logs" / "metrics.csv").read_text()
    config_written = (tmp_path / "config.yaml").stat().st_mtime_ns

    again = run_tool("train.py", str(CONFIG), "--out", str(tmp_path), f"data.root={shapes}", *TINY, check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    assert (tmp_path / "config.yaml").stat().st_mtime_ns == config_written
    assert not list((tmp_path / "checkpoints").glob("last-v*.ckpt"))

    run_tool(
        "train.py",
        str(CONFIG),
        "--out",
        str(tmp_path),
        "--resume",
        f"data.root={shapes}",
        *TINY,
        "trainer.max_epochs=2",
    )
    second = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["epoch"] == first["epoch"] + 1
    assert second["global_step"] == 2 * first["global_step"] > 0
    assert (tmp_path / "logs" / "metrics.csv").read_text() == first_log  # the first attempt's history, untouched
    resumed_rows = (tmp_path / "logs" / "resume-1" / "metrics.csv").read_text().splitlines()
    epoch = resumed_rows[0].split(",").index("epoch")
    epochs = {row.split(",")[epoch] for row in resumed_rows[1:]}
    assert "1" in epochs and "0" not in epochs  # the resumed epoch (and the final validation), in its own file

    # Resuming under another model, or from a truncated file, is one line before anything runs.
    written = (tmp_path / "checkpoints" / "last.ckpt").read_bytes()
    other = run_tool(
        "train.py",
        str(CONFIG),
        "--out",
        str(tmp_path),
        "--resume",
        f"data.root={shapes}",
        *TINY,
        "model.width_mult=0.5",
        check=False,
    )
    assert other.returncode == 2 and "model.width_mult" in other.stderr and other.stderr.startswith("error:")
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(written[: len(written) // 2])
    truncated = run_tool(
        "train.py", str(CONFIG), "--out", str(tmp_path), "--resume", f"data.root={shapes}", *TINY, check=False
    )
    assert truncated.returncode == 2 and "cannot read checkpoint" in truncated.stderr


def test_resume_without_checkpoint_is_an_error(shapes: Path, tmp_path: Path) -> None:
    result = run_tool("train.py", str(CONFIG), "--out", str(tmp_path), "--resume", f"data.root={shapes}", check=False)
    assert result.returncode == 2
    assert "cannot resume" in result.stderr and "last.ckpt" in result.stderr


def test_unknown_override_key_is_an_error_naming_it(shapes: Path, tmp_path: Path) -> None:
    result = run_tool("train.py", str(CONFIG), "--out", str(tmp_path), "model.widht_mult=0.5", check=False)
    assert result.returncode == 2
    assert "model.widht_mult" in result.stderr


def test_eval_may_change_post_processing_settings(trained: Path, shapes: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    # Trained with NMS at 0.6 keeping 100 detections per image.
    post = ["model.nms_threshold=0.3", "model.detections_per_image=2"]
    args = ["--checkpoint", str(ckpt), "--out", str(tmp_path), f"data.root={shapes}", *TINY, *post]
    run_tool("eval.py", str(CONFIG), *args)
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions
    per_image: dict[int, int] = {}
    for p in predictions:
        per_image[p["image_id"]] = per_image.get(p["image_id"], 0) + 1
    assert max(per_image.values()) <= 2


def test_eval_refuses_a_checkpoint_of_another_width(trained: Path, shapes: Path, tmp_path: Path) -> None:
    ckpt = trained / "checkpoints" / "last.ckpt"
    result = run_tool(
        "eval.py",
        str(CONFIG),
        "--checkpoint",
        str(ckpt),
        f"data.root={shapes}",
        *TINY,
        "model.width_mult=0.5",
        check=False,
    )
    assert result.returncode == 2
    assert "model.width_mult" in result.stderr


def test_plain_ssd_loop_trains_and_reports_coco_metrics(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain.json"
    run_tool("plain_ssd_loop.py", "--root", str(shapes), "--epochs", "1", "--batch-size", "4", "--out", str(out))
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 7
    assert 0.0 <= metrics["map_50"] <= 1.0
    assert metrics["args"]["epochs"] == 1


def test_eval_never_replaces_results_unasked(trained: Path, shapes: Path, tmp_path: Path) -> None:
    ckpt = str(trained / "checkpoints" / "last.ckpt")
    (tmp_path / "metrics.json").write_text('{"mine": 1}')
    args = ("eval.py", str(CONFIG), "--checkpoint", ckpt, "--out", str(tmp_path), f"data.root={shapes}", *TINY)

    refused = run_tool(*args, check=False)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (tmp_path / "metrics.json").read_text() == '{"mine": 1}'
    run_tool(*args, "--overwrite")
    assert "map" in json.loads((tmp_path / "metrics.json").read_text())
