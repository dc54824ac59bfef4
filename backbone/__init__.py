"""The MobileNetV1 network, its weight loading and its cost accounting; nothing task-specific."""

from backbone.cost import CostReport, profile_model
from backbone.mobilenet_v1 import MobileNetV1, MobileNetV1Backbone, StageInfo
from backbone.weights import WeightLoadError, load_weights

__all__ = [
    "CostReport",
    "MobileNetV1",
    "MobileNetV1Backbone",
    "StageInfo",
    "WeightLoadError",
    "load_weights",
    "profile_model",
]
