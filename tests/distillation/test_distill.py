"""Distillation end to end on a tiny Stanford Dogs set: the frozen teacher, its kinds, the cache, the data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.common.build import build_module
from tasks.common.errors import CheckpointError, ConfigError
from tasks.common.runner import evaluate
from tasks.detection.task import TASK as DETECTION
from tasks.distillation import runner as distill_runner
from tasks.distillation.cache import CACHE_FILE, teacher_cache
from tasks.distillation.config import DistillConfig
from tasks.distillation.data import DistillationDataModule, collate_two_views
from tasks.distillation.objective import DistillationObjective, labeled_mask
from tasks.distillation.runner import distill
from tasks.distillation.teacher import load_teacher
from tasks.registry import TASKS, load_task_config

from .conftest import NUM_BREEDS, classifier_module, save_checkpoint, write_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) width-0.5 classifier of the 3 breeds at 48 px, saved as tools/train.py saves."""
    torch.manual_seed(0)
    return save_checkpoint(classifier_module(width_mult=0.5, image_size=48), tmp_path_factory.mktemp("t") / "t.ckpt")


def _run(config_path: Path, out: Path, teacher: str, resume: bool = False, **overrides: Any) -> Path:
    config, task = load_task_config(config_path, [f"{k}={v}" for k, v in overrides.items()])
    config.setdefault("distill", {})["teacher"] = teacher
    return distill(task, config, TASKS, out=out, resume=resume)


@pytest.fixture(scope="module")
def captured_run(dogs: Path, teacher_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One distillation run, with the student module and the teacher's state before training kept for checks."""
    captured: dict[str, Any] = {}
    real_fit = distill_runner.fit

    def capturing_fit(task, module, datamodule, config, out, resume, before_fit, after_fit):  # type: ignore[no-untyped-def]
        captured["module"] = module
        captured["teacher_state"] = {
            k: v.clone() for k, v in module.training_objective.teacher.module.state_dict().items()
        }
        return real_fit(task, module, datamodule, config, out, resume, before_fit=before_fit, after_fit=after_fit)

    patch = pytest.MonkeyPatch()
    patch.setattr(distill_runner, "fit", capturing_fit)
    tmp = tmp_path_factory.mktemp("run")
    try:
        captured["run_dir"] = _run(write_config(tmp / "c.yaml", dogs), tmp / "run", str(teacher_checkpoint))
    finally:
        patch.undo()
    captured["config"] = tmp / "c.yaml"
    return captured


@pytest.mark.slow
def test_a_rerun_with_the_same_seed_ends_with_the_same_weights_and_metrics(
    captured_run: dict[str, Any], teacher_checkpoint: Path, tmp_path: Path, assert_same_run
) -> None:
    rerun = _run(captured_run["config"], tmp_path / "run", str(teacher_checkpoint))

    assert_same_run(captured_run["run_dir"], rerun)


@pytest.mark.slow
def test_the_teacher_gets_no_gradients_and_keeps_its_weights_and_statistics(captured_run: dict[str, Any]) -> None:
    teacher = captured_run["module"].training_objective.teacher.module
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(value, after[key].cpu()) for key, value in captured_run["teacher_state"].items())


@pytest.mark.slow
def test_the_teacher_stays_in_eval_mode_across_validation(captured_run: dict[str, Any]) -> None:
    teacher = captured_run["module"].training_objective.teacher.module
    assert not any(m.training for m in teacher.modules())


@pytest.mark.slow
def test_the_optimizer_sees_only_the_student(captured_run: dict[str, Any]) -> None:
    module = captured_run["module"]
    optimized = {id(p) for group in module.trainer.optimizers[0].param_groups for p in group["params"]}
    teacher = module.training_objective.teacher.module
    assert optimized == {id(p) for p in module.model.parameters()}
    assert not optimized & {id(p) for p in teacher.parameters()}


@pytest.mark.slow
def test_the_student_checkpoint_is_a_plain_student(captured_run: dict[str, Any], dogs: Path, tmp_path: Path) -> None:
    checkpoint = captured_run["run_dir"] / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert set(state) == set(classifier_module().state_dict())
    config, task = load_task_config(captured_run["config"])
    metrics = evaluate(task, config, checkpoint, out=tmp_path)
    assert metrics["num_images"] == 2 * NUM_BREEDS


@pytest.mark.slow
def test_metrics_hold_the_teachers_own_score_and_config_the_teacher(captured_run: dict[str, Any]) -> None:
    run_dir = captured_run["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"top1", "teacher_top1"} <= set(metrics) and 0.0 <= metrics["teacher_top1"] <= 1.0
    assert "teacher: " in (run_dir / "config.yaml").read_text()


def _teacher_error(dogs: Path, tmp_path: Path, teacher: str, **distill: Any) -> str:
    config, task = load_task_config(write_config(tmp_path / "c.yaml", dogs, distill=distill))
    info = task.datamodule(**config["data"]).data_info()
    settings = DistillConfig(**{**config.get("distill", {}), "teacher": teacher})
    with pytest.raises((CheckpointError, ConfigError)) as error:
        teacher_obj = load_teacher(teacher, task, settings, info, TASKS)
        student = build_module(task, config, info)
        from tasks.distillation.teacher import check_teacher_fits

        check_teacher_fits(teacher_obj, student, 32)
    return str(error.value)


def test_a_missing_teacher_file_is_named(dogs: Path, tmp_path: Path) -> None:
    assert "teacher not found: " in _teacher_error(dogs, tmp_path, str(tmp_path / "nope.ckpt"))


def test_a_timm_teacher_needs_local_weights(dogs: Path, tmp_path: Path) -> None:
    assert "--teacher-weights" in _teacher_error(dogs, tmp_path, "timm:resnet10t")


def test_an_unknown_timm_name_is_refused(dogs: Path, tmp_path: Path) -> None:
    message = _teacher_error(dogs, tmp_path, "timm:no_such_net", teacher_weights=str(tmp_path / "w.safetensors"))
    assert "no_such_net" in message


def test_a_detector_cannot_teach_a_classifier(dogs: Path, tmp_path: Path) -> None:
    info = {"class_names": ["a", "b"], "num_classes": 2, "label_to_cat_id": {1: 1, 2: 2}}
    detector = build_module(DETECTION, {"model": {"width_mult": 0.25, "image_size": 64}, "optimizer": {}}, info)
    path = tmp_path / "ssd.ckpt"
    hyper = dict(detector.hparams)
    hyper["data_info"]["image_size"] = 64
    torch.save({"state_dict": detector.state_dict(), "hyper_parameters": hyper}, path)

    message = _teacher_error(dogs, tmp_path, str(path))

    assert "cannot teach this task" in message and "softmax" in message


def test_a_teacher_with_another_number_of_outputs_is_refused_naming_both(dogs: Path, tmp_path: Path) -> None:
    path = save_checkpoint(classifier_module(num_classes=7), tmp_path / "seven.ckpt")

    message = _teacher_error(dogs, tmp_path, str(path))

    assert "7 outputs" in message and f"head {NUM_BREEDS}" in message


def test_an_onnx_teacher_needs_its_preprocessing_in_the_config(dogs: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.onnx"
    path.write_bytes(b"not read before the check")

    message = _teacher_error(dogs, tmp_path, str(path))

    assert "distill.teacher_image_size" in message and "distill.teacher_mean" in message


@pytest.mark.slow
def test_an_onnx_teacher_teaches_and_is_scored(dogs: Path, tmp_path: Path) -> None:
    network = classifier_module(width_mult=0.5, image_size=40).model.eval()
    onnx_file = tmp_path / "teacher.onnx"
    torch.onnx.export(
        network,
        (torch.rand(1, 3, 40, 40),),
        str(onnx_file),
        dynamo=False,
        input_names=["image"],
        dynamic_axes={"image": {0: "batch"}},
    )
    # The exported graph normalises inside (as our networks do): the ONNX input is RGB in [0, 1].
    onnx_settings = {"teacher_image_size": 40, "teacher_mean": [0, 0, 0], "teacher_std": [1, 1, 1]}
    config = write_config(tmp_path / "c.yaml", dogs, distill=onnx_settings)

    run_dir = _run(config, tmp_path / "run", str(onnx_file))

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["teacher_top1"] <= 1.0 and metrics["num_images"] == 2 * NUM_BREEDS


def _data(
    dogs: Path, tmp_path: Path, teacher_size: int = 48, data: dict[str, Any] | None = None, **distill: Any
) -> DistillationDataModule:
    data = {"augment": "none", **(data or {})}
    config, task = load_task_config(write_config(tmp_path / "c.yaml", dogs, data=data))
    val = task.datamodule(**config["data"])
    train = task.datamodule(**{**config["data"], "image_size": max(32, teacher_size)})
    module = DistillationDataModule(train, val, 32, teacher_size, **distill)
    module.setup("fit")
    return module


def test_the_teacher_sees_its_own_size_of_the_students_crop(dogs: Path, tmp_path: Path) -> None:
    data = _data(dogs, tmp_path, teacher_size=48)

    batch = collate_two_views([data.train_dataset[i] for i in range(4)])

    assert batch.inputs.shape == (4, 3, 32, 32) and batch.teacher_inputs.shape == (4, 3, 48, 48)
    shrunk = torch.nn.functional.interpolate(batch.teacher_inputs, size=(32, 32), mode="bilinear", antialias=True)
    assert (shrunk - batch.inputs).abs().mean() < 0.02  # one crop, two sizes


def test_a_label_fraction_keeps_the_labels_that_training_alone_would_use(dogs: Path, tmp_path: Path) -> None:
    data = _data(dogs, tmp_path, data={"label_fraction": 0.25, "label_seed": 3})

    targets = torch.tensor([data.train_dataset[i][1] for i in range(len(data.train_dataset))])
    kept = labeled_mask(targets)

    assert len(targets) == 4 * NUM_BREEDS and int(kept.sum()) == round(0.25 * 4 * NUM_BREEDS)
    alone = data.train_data.labeled_train_dataset()  # what tools/train.py data.label_fraction=0.25 trains on
    assert sorted(alone.indices) == kept.nonzero().flatten().tolist()
    other_seed = _data(dogs, tmp_path, data={"label_fraction": 0.25, "label_seed": 4}).train_data
    assert other_seed.labeled_mask(len(targets)) != data.train_data.labeled_mask(len(targets))


def test_unlabeled_images_alone_can_be_the_training_set(dogs: Path, tmp_path: Path) -> None:
    folder = dogs / "Images"
    data = _data(dogs, tmp_path, unlabeled=str(folder), train_on="unlabeled")

    assert len(data.train_dataset) == len(list(folder.rglob("*.jpg")))
    assert not labeled_mask(torch.tensor([data.train_dataset[0][1]])).any()


def test_unlabelled_images_over_the_tasks_max_image_pixels_are_skipped_naming_them(dogs: Path, tmp_path: Path) -> None:
    # The dogs are 40 to 56 pixels a side: 1600 pixels at least.
    data = _data(dogs, tmp_path, data={"max_image_pixels": 1000}, unlabeled=str(dogs / "Images"), train_on="unlabeled")
    first = data.train_dataset.path(0)

    with pytest.warns(UserWarning, match=re.escape(str(first)) + r".*data\.max_image_pixels=1000"):
        assert data.train_dataset[0] is None


def test_the_cache_gives_the_loss_of_the_live_teacher(dogs: Path, tmp_path: Path, teacher_checkpoint: Path) -> None:
    data = _data(dogs, tmp_path, teacher_size=48)
    config, task = load_task_config(tmp_path / "c.yaml")
    teacher = load_teacher(str(teacher_checkpoint), task, DistillConfig(), data.data_info(), TASKS)
    student = build_module(task, config, data.data_info()).eval()
    objective = DistillationObjective(teacher, "softmax", temperature=2.0)
    live = objective(student, collate_two_views([data.train_dataset[i] for i in range(4)]))[0]

    data.use_cache(teacher_cache(teacher, data.train_dataset, tmp_path, batch_size=4, write=True))
    cached_batch = collate_two_views([data.train_dataset[i] for i in range(4)])

    assert cached_batch.teacher_outputs is not None and cached_batch.teacher_inputs is None
    assert objective(student, cached_batch)[0].item() == pytest.approx(live.item(), rel=1e-5)
    assert (tmp_path / CACHE_FILE).is_file()


def test_the_cache_is_refused_with_augmentation(dogs: Path, tmp_path: Path, teacher_checkpoint: Path) -> None:
    config = write_config(tmp_path / "c.yaml", dogs, distill={"cache_teacher": True})
    with pytest.raises(ConfigError, match="data.augment"):
        _run(config, tmp_path / "run", str(teacher_checkpoint))


@pytest.mark.slow
def test_the_cache_survives_resume(dogs: Path, tmp_path: Path, teacher_checkpoint: Path) -> None:
    config = write_config(tmp_path / "c.yaml", dogs, data={"augment": "none"}, distill={"cache_teacher": True})
    _run(config, tmp_path / "run", str(teacher_checkpoint))
    cache = tmp_path / "run" / CACHE_FILE
    written = cache.stat().st_mtime_ns
    first = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)

    _run(config, tmp_path / "run", str(teacher_checkpoint), resume=True, **{"trainer.max_epochs": 2})

    assert cache.stat().st_mtime_ns == written
    second = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert second["epoch"] == first["epoch"] + 1 and second["global_step"] == 2 * first["global_step"]


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_a_label_fraction_outside_zero_to_one_is_refused(dogs: Path, tmp_path: Path, fraction: float) -> None:
    with pytest.raises(ConfigError, match="data.label_fraction"):
        _data(dogs, tmp_path, data={"label_fraction": fraction})


@pytest.mark.slow
def test_a_student_learns_from_an_unlabelled_folder_alone(dogs: Path, tmp_path: Path, teacher_checkpoint: Path) -> None:
    folder = tmp_path / "unlabelled" / "deeper"
    folder.mkdir(parents=True)
    for index, image in enumerate(sorted((dogs / "Images").rglob("*.jpg"))[:6]):
        (folder / f"photo_{index}.jpg").write_bytes(image.read_bytes())
    config = write_config(tmp_path / "c.yaml", dogs, distill={"unlabeled": str(tmp_path / "unlabelled")})

    run_dir = _run(config, tmp_path / "run", str(teacher_checkpoint), **{"distill.train_on": "unlabeled"})

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0 and 0.0 <= metrics["teacher_top1"] <= 1.0
    assert metrics["train_size"] == 6  # the images it trained on, not the task's labelled split
    trained = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    # 6 images (found below the folder): one full batch of 4; the 12 labelled images would give the 2 allowed
    assert trained["global_step"] == 1


@pytest.mark.slow
def test_two_process_ddp_distils_with_the_frozen_teacher(dogs: Path, tmp_path: Path, teacher_checkpoint: Path) -> None:
    # Plain DDP (no find_unused_parameters): the teacher is outside the wrapped student, so no parameter goes unused.
    config = write_config(tmp_path / "c.yaml", dogs)
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "distill.py"), str(config), "--teacher", str(teacher_checkpoint)]
        + ["--out", str(tmp_path / "run"), "trainer.devices=2", "trainer.strategy=ddp"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and not any("teacher" in key for key in checkpoint["state_dict"])
    assert "teacher_top1" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_data_unlabeled_is_read_as_the_distill_folder(dogs: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", dogs)

    config, _ = load_task_config(path, ["data.unlabeled=faces/extra"])

    assert config["distill"]["unlabeled"] == "faces/extra" and "unlabeled" not in config["data"]
    with pytest.raises(ConfigError, match="disagree"):
        load_task_config(path, ["data.unlabeled=one", "distill.unlabeled=two"])
