"""The classifier: any width and input size, normalisation inside the model, a frozen backbone phase, timm
networks, any registered backbone, and weights shared with the detection task in both directions."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from backbone import BACKBONES, BackboneSpec, FeatureBackbone, MobileNetV1, TapInfo, load_weights
from tasks.classification.data import ClassificationDataModule
from tasks.common.classifier import build_classifier
from tasks.common.errors import ConfigError
from tasks.detection.ssd import ssd300_mobilenet_v1

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _mobilenet_v1_keys(prefix: str) -> list[str]:
    keys = []
    for part in ["conv0.", *(f"conv{i}.{layer}." for i in range(1, 14) for layer in ("dw", "pw"))]:
        keys += [f"{prefix}{part}conv.weight", *(f"{prefix}{part}bn.{key}" for key in _BN)]
    return keys


# The state-dict keys of the MobileNetV1 classifier that checkpoints written so far hold (under Lightning's "model.").
CLASSIFIER_KEYS = [*_mobilenet_v1_keys("network.backbone."), "network.fc.weight", "network.fc.bias"]


class OneConv(FeatureBackbone):
    """A backbone that is not MobileNetV1: one tap, "s4", of ``width`` channels."""

    mean = (0.2, 0.3, 0.4)
    std = (0.5, 0.6, 0.7)

    def __init__(self, width: int = 6, out_features: Sequence[str] = ("s4",)) -> None:
        super().__init__()
        self.s4 = nn.Conv2d(3, width, 4, stride=4)
        self._set_taps([TapInfo("s4", width, 4)], out_features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return OrderedDict(s4=self.s4(x))


def _lightning_checkpoint(model: nn.Module, path: Path) -> Path:
    """What tools/train.py writes: the task module's state dict, whose model sits under ``model.``."""
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


@pytest.mark.parametrize(("width_mult", "size"), [(0.25, 32), (0.5, 50)])
def test_logits_have_one_column_per_class_at_any_width_and_size(width_mult: float, size: int) -> None:
    model = build_classifier(num_classes=7, width_mult=width_mult).eval()

    assert model(torch.rand(2, 3, size, size)).shape == (2, 7)


def _recalibrate_batchnorm(model: nn.Module, batches) -> None:
    """Exact BatchNorm statistics of the final weights ("precise BN"): after a few fast steps the running averages
    still mix in the statistics of the first weights."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch.inputs)


def test_a_few_training_steps_beat_chance(shapes_root: Path) -> None:
    torch.manual_seed(0)
    data = ClassificationDataModule(
        str(shapes_root), image_size=48, batch_size=16, num_workers=0, augment="none", eval_crop_fraction=1.0
    )
    data.setup("fit")
    model = build_classifier(num_classes=3, width_mult=0.25)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(10):  # 3 steps an epoch
        for batch in data.train_dataloader():
            loss = nn.functional.cross_entropy(model(batch.inputs), batch.targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    _recalibrate_batchnorm(model, data.train_dataloader())

    model.eval()
    with torch.no_grad():
        correct = sum((model(b.inputs).argmax(1) == b.targets).sum().item() for b in data.val_dataloader())
    assert correct / len(data.val_dataset) > 0.5  # chance is 1/3


def test_a_frozen_backbone_gets_no_gradients_and_keeps_its_batchnorm_statistics() -> None:
    model = build_classifier(num_classes=3, width_mult=0.25, freeze_backbone_epochs=1)
    model.set_backbone_frozen(True)
    model.train()
    running_mean = model.network.backbone.conv1.pw.bn.running_mean.clone()

    model(torch.rand(2, 3, 32, 32)).sum().backward()

    assert all(p.grad is None for p in model.network.backbone.parameters())
    assert model.network.fc.weight.grad is not None
    assert torch.equal(model.network.backbone.conv1.pw.bn.running_mean, running_mean)
    model.set_backbone_frozen(False)
    assert all(p.requires_grad for p in model.parameters()) and model.network.backbone.conv1.pw.bn.training


def test_a_timm_network_can_be_the_classifier() -> None:
    pytest.importorskip("timm")
    model = build_classifier(num_classes=4, backbone="timm:resnet10t").eval()

    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 4)
    assert model.head_name == "fc"


def test_timm_weights_load_from_a_local_file_without_the_classifier_of_another_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timm = pytest.importorskip("timm")
    source = timm.create_model("resnet10t", pretrained=False, num_classes=10)
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)

    with caplog.at_level(logging.WARNING, logger="tasks.common.classifier"):
        model = build_classifier(num_classes=4, backbone="timm:resnet10t", backbone_weights=str(path))

    assert torch.equal(model.network.conv1[0].weight, source.conv1[0].weight)
    assert model.network.fc.weight.shape == (4, source.fc.in_features)
    assert "fc.weight (10, 512) in the file, (4, 512) in the model" in caplog.text  # and left at its initialisation


def test_mobilenet_knobs_are_refused_for_a_timm_network() -> None:
    with pytest.raises(ValueError, match="width_mult"):
        build_classifier(num_classes=4, backbone="timm:resnet10t", width_mult=0.5)


@pytest.mark.parametrize(
    "name", ["hf-hub:timm/mobilenetv3_large_100.ra_in1k", "hf_hub:timm/resnet10t", "timm/resnet10t"]
)
def test_a_timm_name_that_would_reach_a_model_hub_is_refused(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("timm was asked to build a hub model")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(ConfigError, match="names a model hub"):
        build_classifier(num_classes=4, backbone=f"timm:{name}")


def test_a_detection_checkpoint_gives_the_classifier_its_backbone(tmp_path: Path) -> None:
    detector = ssd300_mobilenet_v1(num_classes=2, width_mult=0.25)
    path = _lightning_checkpoint(detector, tmp_path / "ssd.ckpt")

    classifier = build_classifier(num_classes=5, width_mult=0.25, backbone_weights=str(path))

    ours, theirs = classifier.network.backbone, detector.backbone.body
    assert torch.equal(ours.conv7.pw.conv.weight, theirs.conv7.pw.conv.weight)
    assert torch.equal(ours.conv13.dw.bn.running_var, theirs.conv13.dw.bn.running_var)


def test_a_classifier_checkpoint_gives_the_detector_its_backbone(tmp_path: Path) -> None:
    classifier = build_classifier(num_classes=5, width_mult=0.25)
    with torch.no_grad():
        classifier.network.backbone.conv3.dw.conv.weight.add_(1.0)  # differ from any fresh initialisation
    path = _lightning_checkpoint(classifier, tmp_path / "classifier.ckpt")

    detector = load_weights(ssd300_mobilenet_v1(num_classes=2, width_mult=0.25), path)

    assert torch.equal(detector.backbone.body.conv3.dw.conv.weight, classifier.network.backbone.conv3.dw.conv.weight)


def test_a_classifier_checkpoint_with_the_same_classes_restores_the_classifier_too(tmp_path: Path) -> None:
    source = build_classifier(num_classes=5, width_mult=0.25)
    path = _lightning_checkpoint(source, tmp_path / "classifier.ckpt")

    model = build_classifier(num_classes=5, width_mult=0.25, backbone_weights=str(path))

    assert torch.equal(model.network.fc.weight, source.network.fc.weight)


def test_state_dict_keys_are_those_of_existing_checkpoints() -> None:
    assert list(build_classifier(num_classes=5, width_mult=0.25).state_dict()) == CLASSIFIER_KEYS


def test_the_model_normalises_its_0_to_1_input_as_the_old_network_was_fed() -> None:
    model = build_classifier(num_classes=5, width_mult=0.25).eval()
    old = MobileNetV1(num_classes=5, width_mult=0.25).eval()
    old.load_state_dict(model.network.state_dict())
    images = torch.rand(2, 3, 48, 48)

    with torch.no_grad():
        expected = old((images - 0.5) / 0.5)  # TF-slim's [-1, 1], as the data module used to normalise
        torch.testing.assert_close(model(images), expected)


def test_normalisation_can_be_set() -> None:
    model = build_classifier(num_classes=5, width_mult=0.25, image_mean=(0.1, 0.2, 0.3), image_std=(2.0, 2.0, 2.0))
    model.eval()
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        shift = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
        torch.testing.assert_close(model(images), model.network((images - shift) / 2.0))


def test_a_timm_network_takes_the_normalisation_of_its_pretrained_configuration() -> None:
    timm = pytest.importorskip("timm")
    model = build_classifier(num_classes=4, backbone="timm:resnet10t")
    expected = timm.create_model("resnet10t", pretrained=False).pretrained_cfg
    assert model.mean.flatten().tolist() == pytest.approx(expected["mean"])
    assert model.std.flatten().tolist() == pytest.approx(expected["std"])


def test_any_registered_backbone_becomes_a_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BACKBONES, "one_conv", BackboneSpec(OneConv, lambda model, path: model))

    model = build_classifier(num_classes=3, backbone="one_conv", width=10).eval()

    assert model.network.fc.in_features == 10
    assert model.head_name == "fc"
    assert model.mean.flatten().tolist() == pytest.approx([0.2, 0.3, 0.4])
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3)


def test_an_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'mobilenet_v2'.*mobilenet_v1.*timm:NAME"):
        build_classifier(num_classes=3, backbone="mobilenet_v2")


def test_an_unknown_backbone_option_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="widht_mult.*width_mult"):
        build_classifier(num_classes=3, widht_mult=0.25)
