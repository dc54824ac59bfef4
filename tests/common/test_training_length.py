"""A run's length in epochs or in optimizer steps, lengthened to min_steps on a dataset too small for it."""

from __future__ import annotations

from tasks.common.runner import plan_training_length


def test_a_run_in_epochs_takes_epochs_times_steps_per_epoch() -> None:
    kwargs, steps, note = plan_training_length({"max_epochs": 12}, steps_per_epoch=31)

    assert (kwargs, steps, note) == ({"max_epochs": 12}, 372, "")


def test_a_run_in_steps_takes_max_steps_whatever_the_epoch_length() -> None:
    kwargs, steps, _ = plan_training_length({"max_steps": 500}, steps_per_epoch=7)

    assert steps == 500 and kwargs == {"max_steps": 500}


def test_the_first_limit_reached_ends_the_run() -> None:
    _, steps, _ = plan_training_length({"max_epochs": 2, "max_steps": 500}, steps_per_epoch=31)

    assert steps == 62


def test_a_small_dataset_gets_enough_epochs_to_reach_min_steps() -> None:
    # 5 breeds x 8 images in batches of 32: one step per epoch, so 12 epochs would be 12 steps.
    kwargs, steps, note = plan_training_length({"max_epochs": 12}, steps_per_epoch=1, min_steps=300)

    assert kwargs["max_epochs"] == 300 and steps == 300
    assert "12" in note and "300" in note


def test_a_lengthened_run_validates_as_often_as_the_configured_one() -> None:
    config = {"max_epochs": 5, "check_val_every_n_epoch": 5}  # one validation, at the end

    kwargs, steps, _ = plan_training_length(config, steps_per_epoch=40, min_steps=2000)

    assert kwargs["max_epochs"] == 50 and steps == 2000
    assert kwargs["check_val_every_n_epoch"] == 50


def test_min_steps_rounds_up_to_whole_epochs() -> None:
    kwargs, steps, _ = plan_training_length({"max_epochs": 1}, steps_per_epoch=3, min_steps=10)

    assert kwargs["max_epochs"] == 4 and steps == 12


def test_a_dataset_large_enough_is_left_as_configured() -> None:
    config = {"max_epochs": 5, "check_val_every_n_epoch": 3}

    kwargs, steps, note = plan_training_length(config, steps_per_epoch=500, min_steps=2000)

    assert kwargs == config and steps == 2500 and note == ""


def test_a_run_in_steps_below_min_steps_is_raised_to_it() -> None:
    kwargs, steps, _ = plan_training_length({"max_steps": 50}, steps_per_epoch=10, min_steps=200)

    assert kwargs["max_steps"] == 200 and steps == 200


def test_lightning_default_length_is_a_thousand_epochs() -> None:
    _, steps, _ = plan_training_length({}, steps_per_epoch=2)

    assert steps == 2000
