"""The LFW verification protocol as pure functions on numpy arrays: pair distances, the ten-fold accuracy with
thresholds chosen on the other folds, TAR at a fixed FAR, and the ROC curve.

A pair is accepted as the same person when the Euclidean distance between its two L2-normalised embeddings is at
most the threshold (FaceNet compares squared distances; the order, hence every result, is the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FoldResult",
    "TarAtFar",
    "pair_distances",
    "accuracy_at",
    "best_threshold",
    "split_into_folds",
    "cross_validated_accuracy",
    "tar_at_far",
    "roc_curve",
]


@dataclass(frozen=True)
class FoldResult:
    """One held-out fold: the threshold chosen on the other folds and the accuracy it gives on this one."""

    fold: int
    threshold: float
    accuracy: float
    num_same: int
    num_different: int


@dataclass(frozen=True)
class TarAtFar:
    """The true-accept rate at the threshold that accepts at most ``far`` of the impostor pairs.

    ``tar`` is None, with ``reason``, where the pairs cannot resolve that FAR (fewer impostor pairs than 1 / far)
    or there is no genuine pair.
    """

    far: float
    tar: float | None
    threshold: float | None = None
    achieved_far: float | None = None
    reason: str | None = None


def pair_distances(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(P,) Euclidean distances between rows ``first[p]`` and ``second[p]`` of ``embeddings`` (N, D)."""
    difference = embeddings[first].astype(np.float64) - embeddings[second].astype(np.float64)
    return np.sqrt((difference * difference).sum(axis=1))


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """The fraction of pairs classified right when a distance at most ``threshold`` means "same person"."""
    if not len(distances):
        return math.nan
    return float(np.mean((distances <= threshold) == same))


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the threshold with the best accuracy on these pairs.

    The candidates are the midpoints between consecutive distinct distances, and one value below and one above
    them all (accept none, accept all), so every possible split of the sorted pairs is tried once. Where several
    candidates tie, the middle one of them is taken.
    """
    same = np.asarray(same, dtype=bool)
    values = np.unique(distances)
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]])
    genuine = np.sort(distances[same])
    impostor = np.sort(distances[~same])
    accepted_genuine = np.searchsorted(genuine, candidates, side="right")
    accepted_impostor = np.searchsorted(impostor, candidates, side="right")
    correct = accepted_genuine + (len(impostor) - accepted_impostor)
    best = np.flatnonzero(correct == correct.max())
    choice = best[len(best) // 2]
    return float(candidates[choice]), float(correct[choice] / len(distances))


def split_into_folds(same: np.ndarray, num_folds: int = 10) -> np.ndarray:
    """(P,) fold numbers for one list of pairs: its same-person pairs and its different-person pairs are each cut
    into ``num_folds`` consecutive runs in list order (fewer folds when either kind has fewer pairs), and fold k is
    the k-th run of each, so that every fold holds both kinds as LFW's folds do."""
    same = np.asarray(same, dtype=bool)
    folds = np.zeros(len(same), dtype=np.int64)
    count = max(1, min(num_folds, int(same.sum()), int((~same).sum())))
    for kind in (same, ~same):
        for fold, members in enumerate(np.array_split(np.flatnonzero(kind), count)):
            folds[members] = fold
    return folds


def cross_validated_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> list[FoldResult]:
    """LFW's standard accuracy: for each fold, the threshold that is best on all other folds, applied to it.

    With a single fold there are no other folds: its own best threshold is used (an optimistic figure).
    """
    same = np.asarray(same, dtype=bool)
    results = []
    labels = np.unique(folds)
    for fold in labels:
        held_out = folds == fold
        train = ~held_out if len(labels) > 1 else held_out
        threshold, _ = best_threshold(distances[train], same[train])
        results.append(
            FoldResult(
                fold=int(fold),
                threshold=threshold,
                accuracy=accuracy_at(distances[held_out], same[held_out], threshold),
                num_same=int(same[held_out].sum()),
                num_different=int((~same[held_out]).sum()),
            )
        )
    return results


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> TarAtFar:
    """TAR at FAR ``far`` over all pairs.

    With the impostor distances sorted, k = floor(far * impostors) of them may be accepted: the threshold is the
    (k+1)-th smallest, and a pair is accepted when its distance is strictly below it. Impostors tied with that
    distance are all refused, so ties never push the accepted fraction above ``far``.
    """
    same = np.asarray(same, dtype=bool)
    genuine, impostor = distances[same], np.sort(distances[~same])
    # The small tolerance keeps 1000 pairs at FAR 1e-3 from reading as 0.999... accepted pairs.
    allowed = math.floor(len(impostor) * far + 1e-9)
    if allowed < 1:
        needed = math.ceil(1 / far - 1e-9)
        return TarAtFar(
            far,
            None,
            reason=f"{len(impostor)} impostor pairs cannot resolve FAR {far:g}: it needs at least {needed}",
        )
    if not len(genuine):
        return TarAtFar(far, None, reason="no same-person pairs")
    threshold = float(impostor[allowed])
    return TarAtFar(
        far,
        float(np.mean(genuine < threshold)),
        threshold=threshold,
        achieved_far=float(np.mean(impostor < threshold)),
    )


def roc_curve(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, threshold) at every distinct distance, accepting distances at most the threshold; FAR rising."""
    same = np.asarray(same, dtype=bool)
    thresholds = np.unique(distances)
    genuine, impostor = np.sort(distances[same]), np.sort(distances[~same])
    tar = np.searchsorted(genuine, thresholds, side="right") / max(1, len(genuine))
    far = np.searchsorted(impostor, thresholds, side="right") / max(1, len(impostor))
    return far, tar, thresholds
