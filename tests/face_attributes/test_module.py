"""The face-attribute LightningModule: the run's metric keys, unlabelled images in training, predictions.json, and
the hooks a distillation run uses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common.build import build_module
from tasks.common.data import Batch
from tasks.common.errors import ConfigError
from tasks.common.predict import describe_predictions, predict_images
from tasks.face_attributes.module import FaceAttributesModule
from tasks.face_attributes.task import TASK

NAMES = ["Bangs", "Eyeglasses", "Smiling"]


def _module(names: list[str] = NAMES, **model: object) -> FaceAttributesModule:
    data_info = {
        "num_classes": len(names),
        "attribute_names": names,
        "class_names": names,
        "image_size": 32,
        "eval_crop_fraction": 1.0,
        "train_size": 10,
        "val_size": 3,
    }
    config = {"model": {"name": "classifier", "width_mult": 0.25, **model}, "optimizer": {}}
    return build_module(TASK, config, data_info)


def _result(probabilities: list[float], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(probabilities, dtype=np.float32), np.asarray(labels, dtype=np.uint8)


def test_the_model_gets_one_logit_per_attribute_of_the_data() -> None:
    module = _module()

    assert module.model(torch.rand(2, 3, 32, 32)).shape == (2, len(NAMES))


def test_a_model_num_classes_that_contradicts_the_attributes_is_refused() -> None:
    with pytest.raises(ConfigError, match="num_classes is 5 but the data has 3 attributes"):
        _module(num_classes=5)


def test_validation_results_give_the_run_metrics() -> None:
    module = _module()
    results = {
        0: _result([0.9, 0.2, 0.8], [1, 0, 1]),
        1: _result([0.1, 0.7, 0.3], [0, 1, 1]),
        2: _result([0.4, 0.6, 0.1], [0, 0, 0]),
    }

    metrics = module.compute_metrics(results)

    # Bangs AP 1, Eyeglasses AP 1, Smiling: positives at 0.8 and 0.3 below the negative... 0.3 > 0.1: AP 1.
    # Accuracy: Bangs 3/3, Eyeglasses 2/3 (0.6 on a negative), Smiling 2/3 (0.3 on a positive).
    assert metrics == {
        "mean_ap": 1.0,
        "mean_accuracy": pytest.approx(7 / 9, abs=1e-4),
        "num_attributes": 3,
        "num_attributes_without_positives": 0,
        "train_size": 10,
        "val_size": 3,
        "num_images": 3,
    }


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_validation_results_are_probabilities_and_labels_per_image() -> None:
    module = _module().eval()
    batch = Batch(torch.rand(2, 3, 32, 32), torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), torch.tensor([4, 7]), 0)

    with torch.no_grad():
        results = module.validation_results(batch)
        expected = module.model(batch.inputs).sigmoid()

    assert len(results) == 2
    np.testing.assert_allclose(results[0][0], expected[0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(results[1][1], [0, 0, 1])


def test_training_leaves_out_unlabelled_images() -> None:
    module = _module().eval()  # BatchNorm on running statistics: each image's logits do not depend on the others
    inputs = torch.rand(4, 3, 32, 32)
    labelled = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mixed = torch.cat([labelled, torch.full((2, 3), float("nan"))])

    loss, _ = module.training_loss(Batch(inputs, mixed, torch.arange(4), 0))

    expected = torch.nn.functional.binary_cross_entropy_with_logits(module.model(inputs[:2]), labelled)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_a_batch_of_unlabelled_images_gives_a_zero_loss_that_backpropagates() -> None:
    module = _module()
    batch = Batch(torch.rand(2, 3, 32, 32), torch.full((2, 3), float("nan")), torch.arange(2), 0)

    loss, logs = module.training_loss(batch)
    loss.backward()

    assert loss.item() == 0.0 and "accuracy" not in logs
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in module.parameters())


def test_distillation_outputs_are_the_attribute_logits() -> None:
    module = _module().eval()
    images = torch.rand(3, 3, 32, 32)

    with torch.no_grad():
        outputs = module.distillation_outputs(images)
        probabilities = module.predict_records([np.zeros((40, 32, 3), np.uint8)])

    assert FaceAttributesModule.distillation_kind == "sigmoid"
    assert outputs.shape == (3, len(NAMES)) and torch.equal(outputs, module.model(images))
    assert set(probabilities[0][0]["attributes"]) == set(NAMES)


def test_predict_writes_every_attribute_probability_of_each_image(tmp_path: Path) -> None:
    module = _module()
    for index in range(3):
        Image.new("RGB", (36 + index, 44), (index * 80, 100, 50)).save(tmp_path / f"face_{index}.jpg")

    records = predict_images(module, [tmp_path], tmp_path / "out")

    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == records
    assert not list((tmp_path / "out").glob("*.jpg"))
    assert [Path(r["file"]).name for r in records] == ["face_0.jpg", "face_1.jpg", "face_2.jpg"]
    for record in records:
        assert list(record["attributes"]) == NAMES
        assert all(0.0 <= p <= 1.0 for p in record["attributes"].values())


def test_a_score_threshold_chooses_the_attributes_printed_and_predictions_keep_them_all(tmp_path: Path) -> None:
    module = _module().eval()
    head = module.model.network.get_classifier()
    with torch.no_grad():  # probabilities sigmoid(-2), 1/2 and sigmoid(2) whatever the image
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-2.0, 0.0, 2.0]))
    Image.new("RGB", (32, 40), (128, 128, 128)).save(tmp_path / "face.jpg")

    records = predict_images(module, [tmp_path / "face.jpg"], tmp_path / "out", score_threshold=0.6)

    assert records[0]["attributes"] == {"Bangs": 0.1192, "Eyeglasses": 0.5, "Smiling": 0.8808}
    files = [tmp_path / "face.jpg"]
    assert describe_predictions(module, files, records) == [f"{files[0]}: Smiling 0.88, Eyeglasses 0.50"]
    assert describe_predictions(module, files, records, score_threshold=0.6) == [f"{files[0]}: Smiling 0.88"]


def test_example_input_is_one_image_at_the_data_size() -> None:
    example, description = FaceAttributesModule.example_input(None, {}, {"image_size": 48})

    assert example.shape == (1, 3, 48, 48) and "48x48" in description
