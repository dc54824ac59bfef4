"""Checkpoints are read safely and refused, naming the difference, when they do not fit the config or the data."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from backbone import WeightLoadError
from tasks.classification.synthetic import make_synthetic_imagefolder
from tasks.classification.task import TASK as CLASSIFICATION
from tasks.common.build import build_from_checkpoint, build_module, load_checkpoint, load_run
from tasks.common.cli import USER_ERRORS
from tasks.common.config import signature_keys
from tasks.common.errors import CheckpointError
from tasks.common.module import TaskModule
from tasks.common.runner import evaluate, train
from tasks.common.task import Task
from tasks.detection.task import TASK as DETECTION
from tasks.registry import TASKS, load_task_config

NAMES = ["a", "b", "c"]


def _classifier(width_mult: float = 0.25, names: list[str] = NAMES, **model: Any) -> TaskModule:
    config = {"model": {"name": "classifier", "width_mult": width_mult, **model}, "optimizer": {}}
    return build_module(CLASSIFICATION, config, {"class_names": names, "num_classes": len(names)})


def _ssd(**model: Any) -> TaskModule:
    config = {"model": {"width_mult": 0.25, "image_size": 64, **model}, "optimizer": {}}
    info = {"class_names": ["cat", "dog"], "num_classes": 2, "label_to_cat_id": {1: 3, 2: 8}}
    return build_module(DETECTION, config, info)


def _save(module: TaskModule, path: Path, **hyper: Any) -> Path:
    """What Lightning writes (``hyper`` replaces saved hyper-parameters, e.g. as an older version wrote them)."""
    hyper = {**module.hparams, **hyper}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hyper}, path)
    return path


def test_a_checkpoint_of_the_same_model_loads_its_weights(tmp_path: Path) -> None:
    trained = _classifier()
    with torch.no_grad():
        trained.model.network.fc.bias.fill_(0.5)
    fresh = _classifier()

    load_checkpoint(CLASSIFICATION, fresh, _save(trained, tmp_path / "c.ckpt"))

    assert torch.equal(fresh.model.network.fc.bias, torch.full((3,), 0.5))


def test_a_checkpoint_of_another_width_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _save(_classifier(width_mult=0.5), tmp_path / "c.ckpt")

    with pytest.raises(CheckpointError, match=r"model.width_mult: checkpoint 0.5 vs config 0.25"):
        load_checkpoint(CLASSIFICATION, _classifier(width_mult=0.25), path)


def test_a_checkpoint_trained_on_other_classes_is_refused(tmp_path: Path) -> None:
    path = _save(_classifier(names=["x", "y", "z"]), tmp_path / "c.ckpt")

    with pytest.raises(CheckpointError, match="other classes: data_info.class_names"):
        load_checkpoint(CLASSIFICATION, _classifier(names=NAMES), path)


def test_post_processing_settings_may_differ_from_the_training_run_and_the_configs_are_used(tmp_path: Path) -> None:
    path = _save(_ssd(nms_threshold=0.6, score_threshold=0.01), tmp_path / "d.ckpt")
    module = _ssd(nms_threshold=0.3, score_threshold=0.2)

    load_checkpoint(DETECTION, module, path)

    assert (module.model.nms_thresh, module.model.score_thresh) == (0.3, 0.2)


@pytest.mark.parametrize(
    "setting",
    [
        {"iou_threshold": 0.4},
        {"neg_pos_ratio": 1.0, "min_negatives_per_image": 0, "object_balance": 1.0},
        {"backbone_weights": "not/read/when/loading/a/checkpoint.pt"},
    ],
    ids=lambda setting: ",".join(setting),
)
def test_training_only_detection_settings_never_block_a_checkpoint(tmp_path: Path, setting: dict[str, Any]) -> None:
    path = _save(_ssd(), tmp_path / "d.ckpt", model={**_ssd().hparams["model"], **setting})

    load_checkpoint(DETECTION, _ssd(), path)


def test_a_default_spelled_out_is_the_default(tmp_path: Path) -> None:
    classifier = _save(_classifier(), tmp_path / "c.ckpt")  # activation, dropout left out: relu, 0.001
    detector = _save(_ssd(), tmp_path / "d.ckpt")  # activation left out: SSD's own relu6, not MobileNetV1's relu

    load_checkpoint(CLASSIFICATION, _classifier(activation="relu", dropout=0.001, freeze_backbone_epochs=0), classifier)
    load_checkpoint(DETECTION, _ssd(activation="relu6", extra_depths=[512, 256, 256, 128]), detector)
    with pytest.raises(CheckpointError, match=r"model.activation: checkpoint 'relu6' vs config 'relu'"):
        load_checkpoint(DETECTION, _ssd(activation="relu"), detector)
    with pytest.raises(CheckpointError, match=r"model.activation: checkpoint 'relu' vs config 'relu6'"):
        load_checkpoint(CLASSIFICATION, _classifier(activation="relu6"), classifier)


def test_training_only_classifier_settings_never_block_a_checkpoint(tmp_path: Path) -> None:
    path = _save(_classifier(dropout=0.2, freeze_backbone_epochs=3), tmp_path / "c.ckpt")

    load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_the_declared_training_and_inference_keys_are_arguments_of_the_tasks_builders() -> None:
    for task in TASKS.values():
        arguments = {key for builder in task.model_builders.values() for key in signature_keys(builder)}
        declared = set(task.module.training_keys) | set(task.module.inference_keys)
        assert declared <= arguments, (task.name, declared - arguments)
        assert not set(task.module.training_keys) & set(task.module.inference_keys)


def test_detection_category_ids_must_agree(tmp_path: Path) -> None:
    path = _save(_ssd(), tmp_path / "d.ckpt")
    module = _ssd()
    module.hparams["data_info"]["label_to_cat_id"] = {1: 3, 2: 9}

    with pytest.raises(CheckpointError, match="label_to_cat_id"):
        load_checkpoint(DETECTION, module, path)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope.ckpt"):
        load_checkpoint(CLASSIFICATION, _classifier(), tmp_path / "nope.ckpt")


def test_a_truncated_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _save(_classifier(), tmp_path / "c.ckpt")
    path.write_bytes(path.read_bytes()[:1000])

    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*c.ckpt"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_classifier().state_dict(), path)

    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_a_checkpoint_of_another_task_is_named_as_such(tmp_path: Path) -> None:
    path = _save(_ssd(), tmp_path / "d.ckpt")

    with pytest.raises(CheckpointError, match=r"is a detection checkpoint .* this is a classification config"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_a_checkpoint_of_another_task_sharing_a_model_name_is_named_as_such(tmp_path: Path) -> None:
    path = _save(_classifier(), tmp_path / "c.ckpt", task="face_attributes")

    with pytest.raises(CheckpointError, match=r"is a face_attributes checkpoint .* this is a classification config"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_an_older_checkpoint_of_another_task_is_named_by_its_model(tmp_path: Path) -> None:
    path = _save(_ssd(), tmp_path / "d.ckpt", task=None)  # written before checkpoints held their task

    with pytest.raises(CheckpointError, match=r"holds a 'ssd300_mobilenet_v1' model, .* the classification task's"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


def test_a_checkpoint_of_another_task_does_not_fit(tmp_path: Path) -> None:
    detector = _ssd()
    hyper = {"model": dict(_classifier().hparams["model"]), "data_info": {"class_names": NAMES}}
    path = tmp_path / "d.ckpt"
    torch.save({"state_dict": detector.state_dict(), "hyper_parameters": hyper}, path)

    with pytest.raises(CheckpointError, match="does not fit the model: missing"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


class _Payload:
    """Unpickling this would create ``marker``: a loader must refuse the file before anything in it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "marker", tmp_path / "evil.ckpt"
    module = _classifier()
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"x": _Payload(marker)}}, path)

    with pytest.raises(CheckpointError, match=r"evil.ckpt: refused: .*exec.*nothing from it was run"):
        load_checkpoint(CLASSIFICATION, module, path)
    assert not marker.exists()


def test_weights_of_other_shapes_under_the_same_settings_are_refused_naming_the_tensor(tmp_path: Path) -> None:
    hyper = dict(_classifier().hparams)  # says width 0.25...
    path = tmp_path / "c.ckpt"
    torch.save({"state_dict": _classifier(width_mult=0.5).state_dict(), "hyper_parameters": hyper}, path)  # ...is 0.5

    with pytest.raises(CheckpointError, match=r"does not fit the model: size mismatch for model.network.backbone"):
        load_checkpoint(CLASSIFICATION, _classifier(), path)


# ---------------------------------------------------------------------------------------------------------------
# Every hostile file through each way a user hands one over: tools/predict.py and tools/eval.py --checkpoint
# (build_from_checkpoint; evaluate), tools/train.py --resume (train(resume=True)) and model.backbone_weights.


@dataclass
class Hostile:
    """A tiny classification set, a config on it, and checkpoint files that do not fit that config."""

    config: Path
    files: dict[str, Path]
    marker: Path

    def load(self, *overrides: str) -> tuple[dict[str, Any], Task]:
        return load_task_config(self.config, overrides)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    folder = tmp_path_factory.mktemp("hostile")
    root = make_synthetic_imagefolder(folder / "data", num_train=1, num_val=1, num_classes=3, size_range=(32, 33))
    config = {
        "task": "classification",
        "model": {"name": "classifier", "width_mult": 0.25},
        "data": {"root": str(root), "image_size": 32, "batch_size": 2, "num_workers": 0},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    hostile = Hostile(folder / "run.yaml", {}, folder / "marker")
    run_config, task = hostile.load()
    _, module = load_run(task, run_config)
    info = module.hparams["data_info"]
    files = hostile.files
    files["good"] = _save(module, folder / "good.ckpt")
    files["evil"] = folder / "evil.ckpt"
    torch.save({**torch.load(files["good"], weights_only=True), "callbacks": _Payload(hostile.marker)}, files["evil"])
    files["another task"] = _save(_ssd(), folder / "ssd.ckpt")
    files["another task, older"] = _save(_ssd(), folder / "ssd_older.ckpt", task=None)  # before the task was saved
    files["another width"] = _save(
        build_module(task, {"model": {"width_mult": 0.5}, "optimizer": {}}, info), folder / "w.ckpt"
    )
    other_names = {**info, "class_names": [f"other_{name}" for name in info["class_names"]]}
    files["another class list"] = _save(build_module(task, run_config, other_names), folder / "classes.ckpt")
    files["truncated"] = folder / "truncated.ckpt"
    files["truncated"].write_bytes(files["good"].read_bytes()[:20_000])
    files["plain state dict"] = folder / "state_dict.pt"
    torch.save(module.state_dict(), files["plain state dict"])
    files["missing"] = folder / "absent.ckpt"
    return hostile


def _predict(hostile: Hostile, path: Path, out: Path) -> None:
    config, task = hostile.load()
    build_from_checkpoint(task, config, path)


def _evaluate(hostile: Hostile, path: Path, out: Path) -> None:
    config, task = hostile.load()
    evaluate(task, config, path, out=out)


def _resume(hostile: Hostile, path: Path, out: Path) -> None:
    (out / "checkpoints").mkdir(parents=True)
    if path.exists():
        shutil.copy(path, out / "checkpoints" / "last.ckpt")
    config, task = hostile.load()
    train(task, config, out=out, resume=True)


def _backbone_weights(hostile: Hostile, path: Path, out: Path) -> None:
    config, task = hostile.load(f"model.backbone_weights={path}")
    train(task, config, out=out)


ENTRY_POINTS = {"predict": _predict, "eval": _evaluate, "resume": _resume, "backbone_weights": _backbone_weights}
_CHECKPOINT_REFUSALS = {
    "evil": r"refused: its pickle would import or call (builtins\.)?exec, .* nothing from it was run",
    "another task": r"is a detection checkpoint \(task detection, model.name 'ssd300_mobilenet_v1'\), and this is a "
    r"classification config",
    "another task, older": r"holds a 'ssd300_mobilenet_v1' model, which is not one of the classification task's "
    r"\(classifier\): a checkpoint of another task\?",
    "another width": r"written for another model: model.width_mult: checkpoint 0.5 vs config 0.25 ",
    "another class list": r"trained on other classes: data_info.class_names is \['other_",
    "truncated": r"cannot read checkpoint .* \(truncated or corrupt\?\)",
    "plain state dict": r"is not a Lightning checkpoint",
    "missing": r"checkpoint not found",
}
# (entry point, file): the error it must raise, and a pattern of its message (which must also name the file). Not
# listed, as they load by design: predict takes the class list from the checkpoint itself, and backbone_weights
# takes the backbone of another task's checkpoint, of a classifier of other classes or of a plain state dict.
REFUSALS: dict[tuple[str, str], tuple[type[Exception], str]] = {
    **{("predict", case): (CheckpointError, m) for case, m in _CHECKPOINT_REFUSALS.items() if "class" not in case},
    **{("eval", case): (CheckpointError, m) for case, m in _CHECKPOINT_REFUSALS.items()},
    **{("resume", case): (CheckpointError, m) for case, m in _CHECKPOINT_REFUSALS.items() if case != "missing"},
    ("resume", "missing"): (CheckpointError, r"cannot resume: .* does not exist"),
    ("backbone_weights", "evil"): (
        WeightLoadError,
        r"refused: the file's pickle would import or call (builtins\.)?exec",
    ),
    ("backbone_weights", "another width"): (WeightLoadError, r"shape mismatches \(different width_mult\?\)"),
    ("backbone_weights", "truncated"): (
        WeightLoadError,
        r"not a readable torch weights file \(truncated or corrupt\?\)",
    ),
    ("backbone_weights", "missing"): (WeightLoadError, r"no such weights file"),
}


@pytest.mark.parametrize(("entry", "case"), list(REFUSALS), ids=[f"{e}-{c}" for e, c in REFUSALS])
def test_a_checkpoint_that_does_not_fit_is_one_clear_error_before_anything_runs(
    hostile: Hostile, tmp_path: Path, entry: str, case: str
) -> None:
    error_type, pattern = REFUSALS[entry, case]
    out = tmp_path / "out"

    with pytest.raises(error_type, match=pattern) as error:
        ENTRY_POINTS[entry](hostile, hostile.files[case], out)

    named = out / "checkpoints" / "last.ckpt" if entry == "resume" else hostile.files[case]
    assert str(named) in str(error.value)

    assert isinstance(error.value, USER_ERRORS) and "\n" not in str(error.value)  # the tools print it as one line
    assert not hostile.marker.exists()
    written = {path.relative_to(out).as_posix() for path in out.rglob("*")} - {"checkpoints", "checkpoints/last.ckpt"}
    assert not written  # no logs, config.yaml or metrics.json: refused before the run started


# The run config left these out; eval and predict may spell out a default, or change a training-only setting.
NETWORK_UNCHANGED = [
    ["model.activation=relu", "model.dropout=0.001", "model.freeze_backbone_epochs=0"],
    ["model.freeze_backbone_epochs=1", "model.dropout=0.2", "model.backbone_weights=no/such/file.pt"],
]


@pytest.mark.parametrize("overrides", NETWORK_UNCHANGED, ids=["defaults spelled out", "training-only settings"])
def test_eval_and_predict_take_a_checkpoint_whatever_settings_leave_its_network_unchanged(
    hostile: Hostile, tmp_path: Path, overrides: list[str]
) -> None:
    config, task = hostile.load(*overrides)

    metrics = evaluate(task, config, hostile.files["good"], out=tmp_path / "eval")
    module = build_from_checkpoint(task, hostile.load(*overrides)[0], hostile.files["good"])

    assert metrics["num_classes"] == 3
    assert module.hparams["model"]["dropout"] == float(overrides[1].split("=")[1])


def test_eval_names_a_checkpoint_of_another_task_before_looking_for_its_data(hostile: Hostile, tmp_path: Path) -> None:
    config, task = hostile.load(f"data.root={tmp_path / 'not_here'}")

    with pytest.raises(CheckpointError, match="is a detection checkpoint"):
        evaluate(task, config, hostile.files["another task"], out=tmp_path / "eval")
