"""The task module: identity cross-entropy that ignores unlabelled images, the embedder refused by training, the
embeddings a distillation tool reads, and LFW metrics from per-image embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tasks.common.classifier import build_classifier
from tasks.common.data import Batch
from tasks.common.errors import ConfigError
from tasks.face_embedding.model import build_embedder
from tasks.face_embedding.module import FaceEmbeddingModule

from .conftest import calibrated

NUM_IDENTITIES = 5


def _data_info(pairs: list[list[int]] | None = None, folds: list[int] | None = None, **extra) -> dict:
    """``pairs``: [first image, second image, same]; ``folds``: each pair's fold."""
    return {
        "num_classes": NUM_IDENTITIES,
        "train_identities": NUM_IDENTITIES,
        "train_size": 50,
        "pairs": [f"{a} {b} {same} {fold}" for (a, b, same), fold in zip(pairs or [], folds or [])],
        "protocol": "test folds",
        "image_size": 32,
        "crop_fraction": 1.0,
        **extra,
    }


def _module(model: nn.Module | None = None, **info) -> FaceEmbeddingModule:
    model = model or calibrated(build_classifier(num_classes=NUM_IDENTITIES, width_mult=0.25))
    return FaceEmbeddingModule(model, {"name": "identity_classifier"}, None, _data_info(**info))


def _batch(targets: list[int]) -> Batch:
    return Batch(torch.rand(len(targets), 3, 32, 32), torch.tensor(targets), torch.arange(len(targets)), 0)


def test_unlabelled_images_do_not_count_in_the_identity_loss() -> None:
    module = _module().eval()  # eval: dropout and BatchNorm do not depend on the batch
    batch = _batch([1, -100, 3, -100])

    loss, logs = module.training_loss(batch)

    with torch.no_grad():
        logits = module.model(batch.inputs[[0, 2]])
    expected = nn.functional.cross_entropy(logits, torch.tensor([1, 3]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= logs["top1"].item() <= 1.0


def test_a_batch_without_labels_gives_a_zero_loss_that_back_propagates() -> None:
    module = _module()

    loss, _ = module.training_loss(_batch([-100, -100]))
    loss.backward()

    assert loss.item() == 0.0


def test_training_an_embedder_with_identity_labels_is_refused() -> None:
    module = FaceEmbeddingModule(
        build_embedder(embedding_dim=8, width_mult=0.25), {"name": "embedder"}, None, _data_info()
    )

    with pytest.raises(ConfigError, match="tools/distill.py"):
        module.training_loss(_batch([0, 1]))


def test_a_classifier_of_another_width_than_the_identities_is_refused() -> None:
    with pytest.raises(ConfigError, match="3 but the data has 5"):
        _module(build_classifier(num_classes=3, width_mult=0.25))


@pytest.mark.parametrize("builder", ["identity_classifier", "embedder"])
def test_distillation_reads_unit_embeddings_of_either_network(builder: str) -> None:
    if builder == "embedder":
        module = FaceEmbeddingModule(
            calibrated(build_embedder(embedding_dim=8, width_mult=0.25)), {"name": builder}, None, _data_info()
        )
    else:
        module = _module()
    module.eval()

    with torch.no_grad():
        embeddings = module.distillation_outputs(torch.rand(3, 3, 32, 32))

    assert module.distillation_kind == "embedding"
    assert embeddings.shape == (3, 8 if builder == "embedder" else 256)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)


def _unit(*values: float) -> list[float]:
    vector = np.array(values, dtype=np.float64)
    return (vector / np.linalg.norm(vector)).tolist()


def test_metrics_come_from_the_pairs_of_data_info() -> None:
    # Images 0/1 and 2/3 are the same people (identical embeddings); the different pairs are orthogonal.
    results = {0: _unit(1, 0), 1: _unit(1, 0), 2: _unit(0, 1), 3: _unit(0, 1)}
    pairs = [[0, 1, 1], [0, 2, 0], [2, 3, 1], [1, 3, 0]]
    module = _module(pairs=pairs, folds=[0, 0, 1, 1])

    metrics = module.compute_metrics(results)

    assert metrics["lfw_accuracy"] == 1.0 and metrics["lfw_accuracy_std"] == 0.0
    assert (metrics["num_pairs"], metrics["num_folds"], metrics["num_images"]) == (4, 2, 4)
    assert metrics["tar_at_far_1e-3"] is None and "2 impostor pairs" in metrics["tar_at_far_1e-3_reason"]
    assert metrics["tar_at_far_1e-4"] is None and "10000" in metrics["tar_at_far_1e-4_reason"]
    assert (metrics["train_identities"], metrics["train_size"]) == (NUM_IDENTITIES, 50)


def test_a_pair_that_fools_the_threshold_costs_its_fold() -> None:
    # Fold 1 holds a different pair (3, 4) closer than its same pairs: the threshold from fold 0 misjudges it.
    results = {
        0: _unit(1, 0),
        1: _unit(1, 0.05),
        2: _unit(0, 1),
        3: _unit(0.05, 1),
        4: _unit(0.06, 1),
        5: _unit(0.02, 1),
    }
    pairs = [[0, 1, 1], [0, 2, 0], [2, 3, 1], [3, 4, 0], [1, 2, 0], [2, 5, 1]]

    metrics = _module(pairs=pairs, folds=[0, 0, 1, 1, 1, 1]).compute_metrics(results)

    assert metrics["lfw_accuracy"] == 0.875 and metrics["lfw_accuracy_std"] == 0.125


def test_pairs_of_images_left_out_of_validation_are_skipped_and_reported() -> None:
    results = {0: _unit(1, 0), 1: _unit(1, 0), 2: _unit(0, 1)}
    module = _module(pairs=[[0, 1, 1], [0, 2, 0], [2, 3, 1], [1, 3, 0]], folds=[0, 0, 1, 1])

    metrics = module.compute_metrics(results)

    assert metrics["num_pairs"] == 2 and "2 of 4 pairs" in metrics["protocol"]


def test_no_results_give_no_accuracy() -> None:
    metrics = _module(pairs=[[0, 1, 1], [0, 2, 0]], folds=[0, 0]).compute_metrics({})

    assert metrics["lfw_accuracy"] is None and metrics["num_pairs"] == 0


def test_outputs_are_the_fold_table_and_the_roc_picture(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    results = {i: _unit(*rng.normal(size=4)) for i in range(12)}
    pairs = [[i, (i + 1) % 12, i % 2] for i in range(12)]
    module = _module(pairs=pairs, folds=[i % 3 for i in range(12)])
    module._metrics = module.compute_metrics(results)

    module.write_outputs(tmp_path)

    rows = (tmp_path / "folds.csv").read_text().splitlines()
    assert rows[0] == "fold,threshold,accuracy,same_pairs,different_pairs" and len(rows) == 4
    assert (tmp_path / "roc.png").stat().st_size > 1000


def test_prediction_gives_each_image_its_embedding() -> None:
    module = _module().eval()
    images = [np.zeros((40, 30, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)]

    records = module.predict_records(images)

    assert [len(r) for r in records] == [1, 1]
    assert len(records[0][0]["embedding"]) == 256
    assert np.linalg.norm(records[1][0]["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_flip_averaging_makes_the_embedding_mirror_invariant() -> None:
    module = _module(flip_eval=True).eval()
    images = torch.rand(2, 3, 32, 32)

    with torch.no_grad():
        plain = module._embed(images)
        mirrored = module._embed(images.flip(-1))

    assert torch.allclose(plain, mirrored, atol=1e-5)
