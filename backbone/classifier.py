"""An image classifier on any backbone of the contract: its final feature map, global average pool, dropout, fc."""

from __future__ import annotations

from torch import Tensor, nn

from backbone.contract import FeatureBackbone

__all__ = ["FeatureClassifier"]


class FeatureClassifier(nn.Module):
    """``backbone`` -> global average pool -> dropout -> fully connected layer.

    Args:
        backbone: returns its final tap (the last of its ``tap_info``) as its only ``out_features``.
        num_classes: the number of logits.
        dropout: probability, before the fully connected layer.

    State-dict keys: ``backbone.<backbone's keys>``, ``fc.weight``, ``fc.bias`` (timm's ``get_classifier`` is
    ``fc``). ``forward(x)`` maps (N, C, H, W) images, normalised as the backbone expects, to (N, num_classes).
    """

    def __init__(self, backbone: FeatureBackbone, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        final = next(reversed(backbone.tap_info))
        if backbone.out_features != (final,):
            raise ValueError(
                f"a classifier's backbone must return only its final tap {final!r}, got {backbone.out_features}"
            )
        self.backbone = backbone
        self.num_features = backbone.tap_info[final].channels
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Linear:
        return self.fc

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> pooled features (N, num_features)."""
        (features,) = self.backbone(x).values()
        return self.pool(features).flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        """Pooled features (N, num_features) -> logits (N, num_classes)."""
        return self.fc(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))
