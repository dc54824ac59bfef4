"""The distillation losses on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.distillation.losses import distillation_loss, embedding_distance, soft_target_bce, soft_target_kl


def test_kl_of_identical_logits_is_zero() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    assert soft_target_kl(logits, logits.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_is_scaled_by_the_temperature_squared() -> None:
    # Two classes; at T = 2 the teacher's logits (2, 0) give p = softmax(1, 0), the student's (0, 0) give q = 1/2.
    teacher = torch.tensor([[2.0, 0.0]])
    student = torch.tensor([[0.0, 0.0]])
    p1 = math.exp(1) / (math.exp(1) + 1)
    kl = p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5)

    assert soft_target_kl(student, teacher, temperature=2.0).item() == pytest.approx(4 * kl, rel=1e-5)


def test_kl_is_averaged_over_the_batch() -> None:
    teacher = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # the second image already matches
    one = soft_target_kl(student[:1], teacher[:1], temperature=1.0)

    assert soft_target_kl(student, teacher, temperature=1.0).item() == pytest.approx(one.item() / 2, rel=1e-5)


def test_bce_against_soft_targets_is_the_mean_over_attributes() -> None:
    student = torch.tensor([[0.0, 0.0]])  # probabilities 1/2 and 1/2
    teacher = torch.tensor([[0.9, 0.2]])
    expected = (-(0.9 * math.log(0.5) + 0.1 * math.log(0.5)) - (0.2 * math.log(0.5) + 0.8 * math.log(0.5))) / 2

    assert soft_target_bce(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_sigmoid_kind_turns_teacher_logits_into_probabilities() -> None:
    student = torch.tensor([[0.3, -1.2]])
    teacher_logits = torch.tensor([[1.5, -0.5]])

    loss = distillation_loss("sigmoid", student, teacher_logits)

    assert loss.item() == pytest.approx(soft_target_bce(student, teacher_logits.sigmoid()).item())


def test_embedding_distance_is_squared_l2_between_normalised_vectors() -> None:
    student = torch.tensor([[3.0, 0.0], [0.0, 5.0]])
    teacher = torch.tensor([[0.0, 2.0], [0.0, 0.1]])  # orthogonal to the first, same direction as the second

    assert embedding_distance(student, teacher).item() == pytest.approx((2.0 + 0.0) / 2, rel=1e-6)


def test_an_unknown_kind_has_no_loss() -> None:
    with pytest.raises(ValueError, match="kind 'boxes'"):
        distillation_loss("boxes", torch.zeros(1, 2), torch.zeros(1, 2))
