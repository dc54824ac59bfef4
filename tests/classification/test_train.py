"""End to end through the shared runner: train, metrics.json, outputs, then evaluation and prediction of the
checkpoint; and the shipped configs pass the config check."""

from __future__ import annotations

import csv
import importlib.util
import json
import types
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from tasks.classification.data import read_dogs_list
from tasks.common.build import build_from_checkpoint, load_run
from tasks.common.errors import DatasetError, NonFiniteLossError
from tasks.common.predict import predict_images
from tasks.common.runner import evaluate, fit, train
from tasks.registry import load_task_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLASSIFICATION_CONFIGS = [
    "imagenet_mnv1.yaml",
    "dogs_mnv1_224.yaml",
    "dogs_mnv075_224.yaml",
    "dogs_mnv1_192.yaml",
    "dogs_mnv075_192.yaml",
    "demo_dogs.yaml",
]


@pytest.mark.parametrize("name", CLASSIFICATION_CONFIGS)
def test_shipped_configs_pass_the_config_check(name: str) -> None:
    _, task = load_task_config(CONFIGS / name)

    assert task.name == "classification" and task.module.monitor == "val/top1"


def _load_tool(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_tool", CONFIGS.parent / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_config(tmp_path: Path, dogs_root: Path) -> Path:
    config = {
        "task": "classification",
        "seed": 0,
        "model": {"name": "classifier", "width_mult": 0.25, "freeze_backbone_epochs": 1},
        "data": {
            "root": str(dogs_root),
            "layout": "stanford_dogs",
            "image_size": 32,
            "batch_size": 8,
            "num_workers": 0,
        },
        "optimizer": {"name": "rmsprop", "lr": 0.01},
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
    }
    path = tmp_path / "tiny_dogs.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_rerun_with_the_same_seed_ends_with_the_same_weights_and_metrics(
    tmp_path: Path, dogs_root: Path, assert_same_run
) -> None:
    # Augmented (the default light crop and flip) and shuffled: every random draw follows the seed.
    runs = []
    for name in ("first", "second"):
        config, task = load_task_config(_tiny_config(tmp_path, dogs_root))
        runs.append(train(task, config, out=tmp_path / name))

    assert_same_run(*runs)


@pytest.mark.slow
def test_training_writes_metrics_and_outputs_that_evaluation_and_prediction_reuse(
    tmp_path: Path, dogs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root))

    run_dir = train(task, config, out=tmp_path / "run")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"top1", "top5", "num_classes", "train_size", "val_size"} <= set(metrics)
    assert (metrics["num_classes"], metrics["train_size"], metrics["val_size"]) == (5, 15, 10)
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert (run_dir / "per_class_accuracy.csv").is_file() and (run_dir / "confusion_matrix.png").is_file()

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate(task, config, checkpoint, out=tmp_path / "eval") == metrics

    module = build_from_checkpoint(task, config, checkpoint)
    records = predict_images(module, [dogs_root / "Images" / "n02086240-Shih-Tzu"], tmp_path / "predict")
    assert len(records) == 5 and all(len(r["top5"]) == 5 for r in records)

    # tools/predict.py on one image prints its best classes.
    image = Path(records[0]["file"])
    capsys.readouterr()
    arguments = [str(tmp_path / "tiny_dogs.yaml"), "--checkpoint", str(checkpoint), str(image), "--out", str(tmp_path)]
    assert _load_tool("predict").main(arguments) == 0
    first, last = capsys.readouterr().out.strip().splitlines()
    assert first.startswith(f"{image}: ") and first.endswith(" (+2 more)")  # the three best of its top 5
    best = [part.rsplit(" ", 1) for part in first.split(": ", 1)[1].removesuffix(" (+2 more)").split(", ")]
    assert [name for name, _ in best] == [entry["class"] for entry in records[0]["top5"][:3]]
    assert all(0.0 <= float(score) <= 1.0 for _, score in best)
    assert last.startswith("wrote 1 records")


@pytest.mark.slow
def test_a_non_finite_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, dogs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root), ["model.freeze_backbone_epochs=0"])
    datamodule, module = load_run(task, config)
    real_loss = type(module).training_loss
    datamodule.setup("fit")
    steps_per_epoch = len(datamodule.train_dataloader())

    def loss_that_explodes_in_the_second_epoch(self, batch):  # type: ignore[no-untyped-def]
        loss, logs = real_loss(self, batch)
        if self.current_epoch == 1:
            return loss * float("nan"), {**logs, "term": loss * float("inf")}
        return loss, logs

    monkeypatch.setattr(type(module), "training_loss", loss_that_explodes_in_the_second_epoch)

    with pytest.raises(NonFiniteLossError, match=rf"nan at step {steps_per_epoch} \(epoch 1, batch 0\); its terms"):
        fit(task, module, datamodule, config, out=tmp_path / "run")

    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == steps_per_epoch
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())


def _nan_loss_on(module, batches: set[tuple[int, int]], monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Make the loss NaN on the (epoch, batch index) pairs of ``batches``."""
    real_step = type(module).training_step
    real_loss = type(module).training_loss

    def step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        self._batch_idx = batch_idx
        return real_step(self, batch, batch_idx)

    def loss(self, batch):  # type: ignore[no-untyped-def]
        value, logs = real_loss(self, batch)
        return (value * float("nan"), logs) if (self.current_epoch, self._batch_idx) in batches else (value, logs)

    monkeypatch.setattr(type(module), "training_step", step)
    monkeypatch.setattr(type(module), "training_loss", loss)


@pytest.mark.slow
def test_non_finite_batches_are_skipped_and_counted_up_to_the_configured_number(
    tmp_path: Path, dogs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = ["model.freeze_backbone_epochs=0", "optimizer.skip_non_finite=2", "data.batch_size=4"]
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root), overrides)
    datamodule, module = load_run(task, config)
    _nan_loss_on(module, {(0, 1), (1, 0)}, monkeypatch)

    with pytest.warns(UserWarning, match=r"nan at step \d+ \(epoch 1, batch 0\).*batch skipped \(2 of"):
        run_dir = fit(task, module, datamodule, config, out=tmp_path / "run")

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1  # it ran to the end
    rows = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    assert max(float(row["train/skipped_non_finite"] or 0) for row in rows) == 2
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())

    config, task = load_task_config(
        _tiny_config(tmp_path, dogs_root), [overrides[0], overrides[2], "optimizer.skip_non_finite=1"]
    )
    datamodule, module = load_run(task, config)
    _nan_loss_on(module, {(0, 1), (0, 2)}, monkeypatch)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 2\).*after skipping 1 such batches"):
        fit(task, module, datamodule, config, out=tmp_path / "stopped")


@pytest.mark.slow
def test_weights_that_went_non_finite_are_never_saved_over_the_last_good_checkpoint(
    tmp_path: Path, dogs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root), ["model.freeze_backbone_epochs=0"])
    datamodule, module = load_run(task, config)
    real_end = type(module).on_train_epoch_end

    def poison_at_the_end_of_the_second_epoch(self):  # type: ignore[no-untyped-def]
        if self.current_epoch == 1:
            next(self.model.parameters()).data.fill_(float("inf"))
        if real_end is not None:
            real_end(self)

    monkeypatch.setattr(type(module), "on_train_epoch_end", poison_at_the_end_of_the_second_epoch)

    with pytest.raises(NonFiniteLossError, match=r"weights hold NaN or infinite values .* not saved"):
        fit(task, module, datamodule, config, out=tmp_path / "run")

    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values() if value.is_floating_point())


def _break_training_images(root: Path) -> int:
    files, _, _ = read_dogs_list(root / "train_list.mat")
    for name in files:
        (root / "Images" / name).write_bytes(b"\xff\xd8 cut short")
    return len(files)


@pytest.mark.slow
def test_unreadable_training_images_past_the_allowed_share_stop_the_run(tmp_path: Path, dogs_copy: Path) -> None:
    count = _break_training_images(dogs_copy)
    config, task = load_task_config(_tiny_config(tmp_path, dogs_copy), ["data.min_seen_for_bad_fraction=8"])

    with pytest.raises(DatasetError, match=r"8 of the 8 training images seen so far could not be read"):
        train(task, config, out=tmp_path / "run")
    assert count > 8  # it stopped at the first batch, not after the whole schedule


@pytest.mark.slow
def test_batches_of_only_unreadable_images_still_step_when_allowed(tmp_path: Path, dogs_copy: Path) -> None:
    _break_training_images(dogs_copy)
    config, task = load_task_config(_tiny_config(tmp_path, dogs_copy), ["data.max_bad_fraction=1.0"])

    with pytest.warns(UserWarning, match="skipping cannot read image"):
        run_dir = train(task, config, out=tmp_path / "run")

    assert json.loads((run_dir / "metrics.json").read_text())["num_images"] > 0
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] > 0  # each empty batch took a (zero) step


@pytest.mark.slow
def test_a_run_that_crashed_and_resumed_ends_where_the_uninterrupted_one_does(
    tmp_path: Path, dogs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without augmentation, the resumed run draws the same shuffle as the uninterrupted one (random streams saved
    # in the checkpoint, restored after the sanity check): the same final step and weights.
    path = _tiny_config(tmp_path, dogs_root)
    overrides = ["data.augment=none", "model.dropout=0.2", "model.freeze_backbone_epochs=0"]
    config, task = load_task_config(path, [*overrides, "trainer.max_epochs=2"])
    whole = train(task, config, out=tmp_path / "whole")
    config, task = load_task_config(path, [*overrides, "trainer.max_epochs=2"])
    L.seed_everything(0)
    datamodule, module = load_run(task, config)
    real_loss = type(module).training_loss

    def crash_in_the_second_epoch(self, batch):  # type: ignore[no-untyped-def]
        if self.current_epoch == 1:
            raise RuntimeError("the machine went down")
        return real_loss(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(type(module), "training_loss", crash_in_the_second_epoch)
        with pytest.raises(RuntimeError, match="went down"):
            train(task, config, out=tmp_path / "parts")
    config, task = load_task_config(path, [*overrides, "trainer.max_epochs=2"])
    parts = train(task, config, out=tmp_path / "parts", resume=True)

    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(parts / "checkpoints" / "last.ckpt", weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (expected["epoch"], expected["global_step"])
    for name, value in expected["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][name].float(), value.float(), atol=1e-5), name
    assert json.loads((parts / "metrics.json").read_text()) == pytest.approx(
        json.loads((whole / "metrics.json").read_text()), abs=1e-4
    )
