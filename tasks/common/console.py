"""What a run prints: our progress and results, without Lightning's chatter (its litlogger advertisement, a
deprecation warning from its own code, a FLOPs column it cannot fill, the logger's version on every progress bar)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar
from lightning.pytorch.callbacks.model_summary import log as summary_log

# Private, but the only formatter of Lightning's summary table; tests/common/test_console.py notices a change.
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

__all__ = ["ProgressBar", "ModelSummaryWithoutFlops", "console_callbacks", "silence_library_chatter"]


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar without ``v_num``: the logger's version, which for our fixed log folders is the tail of
    "tensorboard" ("oard") or of "resume-N", and says nothing about the run."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class ModelSummaryWithoutFlops(ModelSummary):
    """Lightning's model summary without its FLOPs column and total: Lightning counts them only from an
    ``example_input_array``, which our modules do not set, so they would read 0 (tools/profile.py counts the
    mult-adds)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *columns
        )
        summary_log.info("\n" + table.rsplit("\n", 1)[0])  # the last line is "Total Flops"


def console_callbacks(trainer_kwargs: dict[str, Any]) -> list[L.Callback]:
    """Our progress bar and model summary in place of Lightning's, as the ``trainer:`` arguments ask for them (none
    under ``barebones``). Sets ``enable_model_summary`` to False in ``trainer_kwargs``: with it, Lightning would
    announce that it skips its own summary."""
    if trainer_kwargs.get("barebones"):
        return []
    callbacks: list[L.Callback] = []
    if trainer_kwargs.get("enable_progress_bar") is not False:
        callbacks.append(ProgressBar())
    if trainer_kwargs.get("enable_model_summary") is not False:
        callbacks.append(ModelSummaryWithoutFlops())
    trainer_kwargs["enable_model_summary"] = False
    return callbacks


# Lightning's device report at every Trainer's creation ("GPU available: False, used: False", ...): which device a
# run uses is in its own first line ("training: N optimizer steps ... N process(es)") and in trainer.accelerator.
_DEVICE_REPORT = ("GPU available:", "TPU available:", "HPU available:")


def _not_the_litlogger_tip(record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return "litlogger" not in message and not message.startswith(_DEVICE_REPORT)


def silence_library_chatter() -> None:
    """Drop Lightning's litlogger tip and device report (logged at every Trainer's creation) and torch's deprecation
    warning about ``LeafSpec``, which Lightning's own ``utilities/_pytree.py`` triggers on every fit. Each by its text
    and source, so that every other message still shows; safe to call again."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_the_litlogger_tip not in logger.filters:
        logger.addFilter(_not_the_litlogger_tip)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
