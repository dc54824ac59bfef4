"""The LFW protocol on hand-made distances: thresholds chosen on the other folds, folds of a single list, and TAR at
FAR with ties and with too few impostor pairs."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.face_embedding.verification import (
    accuracy_at,
    best_threshold,
    cross_validated_accuracy,
    pair_distances,
    roc_curve,
    split_into_folds,
    tar_at_far,
)


def test_pair_distances_are_euclidean_between_the_indexed_rows() -> None:
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])

    distances = pair_distances(embeddings, np.array([0, 0]), np.array([1, 2]))

    assert distances == pytest.approx([2**0.5, 0.0])


def test_the_best_threshold_separates_the_pairs_between_the_two_kinds() -> None:
    distances = np.array([0.1, 0.2, 0.3, 0.5, 0.6])
    same = np.array([True, True, True, False, False])

    threshold, accuracy = best_threshold(distances, same)

    assert threshold == pytest.approx(0.4) and accuracy == 1.0


def test_a_distance_equal_to_the_threshold_counts_as_the_same_person() -> None:
    assert accuracy_at(np.array([0.4, 0.4]), np.array([True, False]), 0.4) == 0.5


def test_each_fold_is_scored_with_the_threshold_of_the_other_folds() -> None:
    # Fold 0 is inverted (its own best threshold would be useless); folds 1 and 2 separate at 0.5.
    distances = np.array([0.6, 0.3, 0.1, 0.2, 0.8, 0.9, 0.1, 0.2, 0.8, 0.9])
    same = np.array([1, 0, 1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])

    results = cross_validated_accuracy(distances, same, folds)

    assert [result.fold for result in results] == [0, 1, 2]
    assert results[0].threshold == pytest.approx(0.5)
    assert results[0].accuracy == 0.0  # 0.6 (same) refused and 0.3 (different) accepted at 0.5
    assert results[1].accuracy == results[2].accuracy == 1.0
    assert (results[0].num_same, results[0].num_different) == (1, 1)


def test_a_single_fold_is_scored_with_its_own_best_threshold() -> None:
    results = cross_validated_accuracy(np.array([0.1, 0.9]), np.array([True, False]), np.array([0, 0]))

    assert len(results) == 1 and results[0].accuracy == 1.0


def test_a_single_list_is_cut_into_folds_holding_both_kinds_in_list_order() -> None:
    same = np.array([True] * 20 + [False] * 20)

    folds = split_into_folds(same, 10)

    assert folds[:20].tolist() == folds[20:].tolist() == [k for k in range(10) for _ in range(2)]


def test_a_short_list_gets_fewer_folds() -> None:
    same = np.array([True, True, True, False, False, False, False, False])

    folds = split_into_folds(same, 10)

    assert sorted(set(folds.tolist())) == [0, 1, 2]
    assert all(same[folds == k].any() and (~same[folds == k]).any() for k in range(3))


def _impostors(close: list[float], total: int = 1000, far_away: float = 1.5) -> np.ndarray:
    return np.array(close + [far_away] * (total - len(close)))


def test_tar_at_far_accepts_at_most_that_fraction_of_impostors() -> None:
    genuine = np.array([0.1, 0.2, 0.35, 0.5])
    impostor = _impostors([0.3, 0.4])  # FAR 1e-3 of 1000 pairs: one impostor may be accepted
    distances = np.concatenate([genuine, impostor])
    same = np.arange(len(distances)) < len(genuine)

    result = tar_at_far(distances, same, 1e-3)

    assert result.tar == 0.75 and result.achieved_far == 0.001 and result.reason is None


def test_impostors_tied_at_the_threshold_are_all_refused() -> None:
    genuine = np.array([0.1, 0.2, 0.35, 0.5])
    impostor = _impostors([0.3, 0.3])  # accepting one would accept both: 2 of 1000 > 1e-3
    distances = np.concatenate([genuine, impostor])
    same = np.arange(len(distances)) < len(genuine)

    result = tar_at_far(distances, same, 1e-3)

    assert result.tar == 0.5 and result.achieved_far == 0.0


def test_too_few_impostor_pairs_give_no_tar_and_say_why() -> None:
    distances = np.concatenate([[0.1, 0.2], _impostors([], total=999)])
    same = np.arange(len(distances)) < 2

    result = tar_at_far(distances, same, 1e-3)

    assert result.tar is None
    assert "999 impostor pairs" in result.reason and "1000" in result.reason


def test_exactly_one_over_far_impostor_pairs_is_enough() -> None:
    distances = np.concatenate([[0.1, 0.2], _impostors([], total=1000)])
    same = np.arange(len(distances)) < 2

    assert tar_at_far(distances, same, 1e-3).tar == 1.0


def test_the_roc_curve_rises_to_accepting_everything() -> None:
    distances = np.array([0.1, 0.4, 0.2, 0.3, 0.3])
    same = np.array([True, True, False, False, True])

    far, tar, thresholds = roc_curve(distances, same)

    assert thresholds.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert far.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert tar.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1.0])
