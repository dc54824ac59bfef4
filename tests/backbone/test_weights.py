"""load_weights: our / Lightning / timm formats, and refusals that name the file and the mismatch."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from backbone import MobileNetV1, MobileNetV1Backbone, WeightLoadError, load_weights
from backbone.weights import load_weights_report


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a mis-mapped or ignored BN shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def _same_tensors(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def tiny_backbone() -> MobileNetV1Backbone:
    return _randomize_bn(MobileNetV1Backbone(width_mult=0.25))


@pytest.fixture(scope="module")
def timm_mobilenetv1() -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return _randomize_bn(timm.create_model("mobilenetv1_100", pretrained=False)).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_mobilenetv1_100_gives_the_same_logits(timm_mobilenetv1: nn.Module, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"mobilenetv1_100{suffix}"
    state = timm_mobilenetv1.state_dict()
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)

    ours = load_weights(MobileNetV1(num_classes=1000, activation="relu6"), path).eval()

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        difference = (ours(x) - timm_mobilenetv1(x)).abs().max().item()
    assert difference < 1e-4


def test_our_state_dict_round_trips(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    torch.save(tiny_backbone.state_dict(), tmp_path / "backbone.pt")
    loaded = load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "backbone.pt")
    assert _same_tensors(loaded, tiny_backbone)


def test_classifier_state_dict_loads_backbone_and_classifier(tmp_path: Path) -> None:
    source = _randomize_bn(MobileNetV1(num_classes=10, width_mult=0.25))
    torch.save(source.state_dict(), tmp_path / "classifier.pth")
    assert _same_tensors(
        load_weights(MobileNetV1(num_classes=10, width_mult=0.25), tmp_path / "classifier.pth"), source
    )


def test_classifier_of_another_shape_is_left_at_init_with_a_warning_naming_its_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _randomize_bn(MobileNetV1(num_classes=10, width_mult=0.25))
    torch.save(source.state_dict(), tmp_path / "classifier.pth")
    target = MobileNetV1(num_classes=5, width_mult=0.25)
    initial = target.fc.weight.detach().clone()

    with caplog.at_level(logging.WARNING, logger="backbone.weights"):
        result = load_weights_report(target, tmp_path / "classifier.pth")

    assert not result.classifier_loaded
    assert _same_tensors(target.backbone, source.backbone) and torch.equal(target.fc.weight, initial)
    assert "fc.weight, fc.bias not loaded: 10 classes in the file, 5 in the model: fc is left at" in caplog.text


def test_timm_imagenet_classifier_into_a_smaller_head_is_named_in_a_warning(
    timm_mobilenetv1: nn.Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mobilenetv1_100.safetensors"  # as the README says to save it, from a random model here
    save_file({k: v.contiguous() for k, v in timm_mobilenetv1.state_dict().items()}, str(path))

    with caplog.at_level(logging.WARNING, logger="backbone.weights"):
        load_weights(MobileNetV1(num_classes=5, activation="relu6"), path)

    assert "classifier.weight, classifier.bias not loaded: 1000 classes in the file, 5 in the model" in caplog.text


def test_classifier_file_loads_into_a_bare_backbone(tmp_path: Path) -> None:
    source = _randomize_bn(MobileNetV1(num_classes=10, width_mult=0.25))
    torch.save(source.state_dict(), tmp_path / "classifier.pth")
    assert _same_tensors(
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "classifier.pth"), source.backbone
    )


def test_backbone_inside_another_module_is_found(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    torch.save(tiny_backbone.state_dict(), tmp_path / "backbone.pt")
    detector = nn.ModuleDict({"body": MobileNetV1Backbone(width_mult=0.25), "head": nn.Conv2d(256, 4, 1)})
    load_weights(detector, tmp_path / "backbone.pt")
    assert _same_tensors(detector["body"], tiny_backbone)


def test_lightning_checkpoint_loads(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    checkpoint = {
        "state_dict": {f"model.backbone.body.{k}": v for k, v in tiny_backbone.state_dict().items()}
        | {"model.head.weight": torch.zeros(3, 256)},
        "hyper_parameters": {"width_mult": 0.25, "lr": 0.004, "data_dir": tmp_path, "sizes": (300, 300)},
        "epoch": 3,
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    assert _same_tensors(load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "last.ckpt"), tiny_backbone)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_wrong_width_names_the_shapes(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"half{suffix}"
    state = MobileNetV1Backbone(width_mult=0.5).state_dict()
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    with pytest.raises(WeightLoadError, match=rf"half\{suffix}") as error:
        load_weights(MobileNetV1Backbone(width_mult=1.0), path)
    assert "conv0.conv.weight: file (16, 3, 3, 3) vs model (32, 3, 3, 3)" in str(error.value)
    assert "\n" not in str(error.value)  # the tools print it as one line


def test_timm_weights_of_another_width_are_refused(timm_mobilenetv1: nn.Module, tmp_path: Path) -> None:
    save_file({k: v.contiguous() for k, v in timm_mobilenetv1.state_dict().items()}, str(tmp_path / "timm.safetensors"))
    with pytest.raises(WeightLoadError, match=r"timm-format weights .*width_mult=0.25.*shape mismatches"):
        load_weights(MobileNetV1(num_classes=1000, width_mult=0.25), tmp_path / "timm.safetensors")


def test_a_torchvision_network_of_another_family_is_refused_listing_its_keys(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "mobilenet_v3_small.pth")
    with pytest.raises(WeightLoadError, match=r"mobilenet_v3_small\.pth: no MobileNetV1 weights found.*features\.0"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "mobilenet_v3_small.pth")


def test_wrong_width_is_refused_even_when_not_strict(tmp_path: Path) -> None:
    torch.save(MobileNetV1Backbone(width_mult=0.5).state_dict(), tmp_path / "half.pt")
    with pytest.raises(WeightLoadError, match="shape mismatches"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "half.pt", strict=False)


def test_unrelated_state_dict_lists_its_keys(tmp_path: Path) -> None:
    torch.save(nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1)).state_dict(), tmp_path / "mlp.pt")
    with pytest.raises(WeightLoadError, match=r"mlp\.pt.*4 keys in the file: 0\.weight, 0\.bias, 2\.weight, 2\.bias"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "mlp.pt")


def test_other_variant_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    torch.save(MobileNetV1Backbone(width_mult=0.25, shallow=True).state_dict(), tmp_path / "shallow.pt")
    with pytest.raises(WeightLoadError) as error:
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "shallow.pt")
    message = str(error.value)
    assert "50 missing keys" in message and "conv7.dw.conv.weight" in message


def test_not_strict_skips_missing_keys_and_reports_them(tmp_path: Path) -> None:
    source = _randomize_bn(MobileNetV1Backbone(width_mult=0.25))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("conv13.")}
    torch.save(state, tmp_path / "partial.pt")
    target = MobileNetV1Backbone(width_mult=0.25)
    result = load_weights_report(target, tmp_path / "partial.pt", strict=False)
    assert result.missing and all(k.startswith("conv13.") for k in result.missing)
    assert torch.equal(target.conv12.pw.conv.weight, source.conv12.pw.conv.weight)


def test_prefix_chooses_between_two_backbones(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    other = MobileNetV1Backbone(width_mult=0.5).state_dict()
    state = {f"student.{k}": v for k, v in tiny_backbone.state_dict().items()} | {
        f"teacher.{k}": v for k, v in other.items()
    }
    torch.save(state, tmp_path / "distill.pt")
    with pytest.raises(WeightLoadError, match="pass prefix="):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "distill.pt")
    loaded = load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "distill.pt", prefix="student")
    assert _same_tensors(loaded, tiny_backbone)


def test_truncated_file_names_the_file(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    torch.save(tiny_backbone.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightLoadError, match=r"truncated\.pt: not a readable torch weights file"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "truncated.pt")


def test_truncated_safetensors_names_the_file(tiny_backbone: MobileNetV1Backbone, tmp_path: Path) -> None:
    save_file(tiny_backbone.state_dict(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightLoadError, match=r"truncated\.safetensors"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "truncated.safetensors")


def test_text_file_is_not_a_weights_file(tmp_path: Path) -> None:
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(WeightLoadError, match=r"notes\.pth"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "notes.pth")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightLoadError, match=r"absent\.pt: no such weights file"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), tmp_path / "absent.pt")


class _Payload:
    """Unpickling this would create a marker file: the loader must refuse it before anything runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_without_running_it(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "marker"
    payload = {"conv0.conv.weight": torch.zeros(8, 3, 3, 3), "evil": _Payload(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(WeightLoadError, match=r"evil\.pt: refused"):
        load_weights(MobileNetV1Backbone(width_mult=0.25), path)
    assert not marker.exists()
