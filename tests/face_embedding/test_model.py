"""The two networks: the identity classifier's embedding is the layer before its classifier, L2-normalised; the
embedder's output is a unit vector of ``embedding_dim`` with a classifier's state-dict layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.common.classifier import build_classifier
from tasks.common.errors import ConfigError
from tasks.face_embedding.model import build_embedder

from .conftest import calibrated


@pytest.mark.parametrize("backbone", ["mobilenet_v1", "timm:resnet10t"])
def test_the_classifier_logits_are_its_head_on_the_pre_logits(backbone: str) -> None:
    if backbone.startswith("timm:"):
        pytest.importorskip("timm")
    options = {"width_mult": 0.25} if backbone == "mobilenet_v1" else {}
    model = build_classifier(num_classes=5, backbone=backbone, **options).eval()
    images = torch.rand(2, 3, 32, 32)

    with torch.no_grad():
        logits = model.network.get_classifier()(model.pre_logits(images))
        assert torch.allclose(logits, model(images), atol=1e-5)


def test_the_classifier_embedding_is_a_unit_vector_that_ignores_the_head() -> None:
    model = calibrated(build_classifier(num_classes=5, width_mult=0.25))
    images = torch.rand(3, 3, 32, 32)

    with torch.no_grad():
        before = model.embed(images)
        model.network.fc.weight.mul_(-3.0)
        after = model.embed(images)

    assert before.shape == (3, 256)
    assert torch.allclose(before.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(before, after)


def test_the_embedder_gives_unit_vectors_of_its_embedding_size() -> None:
    model = calibrated(build_embedder(embedding_dim=16, width_mult=0.25))

    with torch.no_grad():
        output = model(torch.rand(3, 3, 32, 32))

    assert output.shape == (3, 16)
    assert torch.allclose(output.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(model.embed(torch.zeros(1, 3, 32, 32)), model(torch.zeros(1, 3, 32, 32)))


def test_the_embedder_has_the_state_dict_layout_of_a_classifier() -> None:
    embedder = build_embedder(embedding_dim=16, width_mult=0.25)
    classifier = build_classifier(num_classes=16, width_mult=0.25)

    assert list(embedder.state_dict()) == list(classifier.state_dict())


def test_the_embedder_takes_its_backbone_from_an_identity_classifier_checkpoint(tmp_path: Path) -> None:
    teacher = build_classifier(num_classes=7, width_mult=0.25)
    with torch.no_grad():
        teacher.network.backbone.conv5.pw.conv.weight.fill_(0.25)
    path = tmp_path / "teacher.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in teacher.state_dict().items()}}, path)

    student = build_embedder(embedding_dim=16, width_mult=0.25, backbone_weights=str(path))

    assert torch.equal(student.network.backbone.conv5.pw.conv.weight, teacher.network.backbone.conv5.pw.conv.weight)


def test_a_timm_network_can_be_the_embedder() -> None:
    pytest.importorskip("timm")
    model = build_embedder(embedding_dim=8, backbone="timm:resnet10t").eval()

    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 8)


def test_an_empty_embedding_is_refused() -> None:
    with pytest.raises(ConfigError, match="embedding_dim"):
        build_embedder(embedding_dim=0, width_mult=0.25)
