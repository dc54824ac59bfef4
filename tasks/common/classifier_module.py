"""What the task modules of an ``ImageClassifier`` share (classification, face attributes, face identities): the
backbone-freezing schedule of ``model.freeze_backbone_epochs`` and its check under DDP."""

from __future__ import annotations

import logging

from lightning.pytorch.strategies import DDPStrategy

from tasks.common.errors import ConfigError
from tasks.common.module import TaskModule

__all__ = ["ClassifierModule"]

logger = logging.getLogger(__name__)


class ClassifierModule(TaskModule):
    """A TaskModule whose ``model`` is a ``tasks.common.classifier.ImageClassifier``: the backbone stays frozen for
    the first ``model.freeze_backbone_epochs`` epochs."""

    # Dropout is the identity in eval mode; the freezing schedule only decides which parameters train.
    training_keys = (*TaskModule.training_keys, "dropout", "freeze_backbone_epochs")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        strategy = self.trainer.strategy
        if (
            stage == "fit"
            and self.model.freeze_backbone_epochs > 0
            and isinstance(strategy, DDPStrategy)
            # Private: DDPStrategy has no public accessor for the arguments it hands DistributedDataParallel.
            and not strategy._ddp_kwargs.get("find_unused_parameters", False)
        ):
            # A frozen backbone's parameters get no gradient, which plain DDP treats as an error mid-epoch.
            raise ConfigError(
                "model.freeze_backbone_epochs > 0 under DDP needs trainer.strategy: ddp_find_unused_parameters_true"
            )

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.model.freeze_backbone_epochs
        if frozen != self.model.backbone_frozen:
            self.model.set_backbone_frozen(frozen)
            logger.info("epoch %d: backbone %s", self.current_epoch, "frozen" if frozen else "trainable")
