"""The training loss: binary cross-entropy over the labelled targets, unlabelled (NaN) ones left out."""

from __future__ import annotations

import math

import torch

from tasks.face_attributes.losses import masked_binary_cross_entropy


def _bce(logit: float, target: float) -> float:
    probability = 1 / (1 + math.exp(-logit))
    return -(target * math.log(probability) + (1 - target) * math.log(1 - probability))


def test_fully_labelled_targets_give_the_mean_over_images_and_attributes() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    loss = masked_binary_cross_entropy(logits, targets)

    expected = (_bce(2.0, 1) + _bce(-1.0, 0) + _bce(0.5, 0) + _bce(0.0, 1)) / 4
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_nan_targets_are_left_out_of_the_loss_and_get_no_gradient() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]], requires_grad=True)
    nan = float("nan")
    targets = torch.tensor([[1.0, nan], [nan, nan]])

    loss = masked_binary_cross_entropy(logits, targets)
    loss.backward()

    assert math.isclose(loss.item(), _bce(2.0, 1), rel_tol=1e-6)
    assert logits.grad[0, 0] != 0 and torch.count_nonzero(logits.grad) == 1


def test_an_unlabelled_batch_gives_a_zero_loss_that_backpropagates_zeros() -> None:
    logits = torch.randn(3, 4, requires_grad=True)

    loss = masked_binary_cross_entropy(logits, torch.full((3, 4), float("nan")))
    loss.backward()

    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert torch.equal(logits.grad, torch.zeros(3, 4))
