"""What the shared task module does for every task: validation results gathered once per sample."""

from __future__ import annotations

from tasks.common.module import merge_results


def test_samples_repeated_by_a_distributed_sampler_count_once() -> None:
    # Two processes; the sampler padded rank 1 with sample 0 again.
    rank0 = {0: "first copy of 0", 2: "two"}
    rank1 = {1: "one", 0: "padding copy of 0"}

    merged = merge_results([rank0, rank1])

    assert merged == {0: "first copy of 0", 1: "one", 2: "two"}
    assert list(merged) == [0, 1, 2]


def test_merging_no_results_gives_no_samples() -> None:
    assert merge_results([{}, {}]) == {}
