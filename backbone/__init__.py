"""Feature extractors for the tasks (the contract, the MobileNetV1 network, the registry by name), their weight
loading and their cost accounting; nothing task-specific."""

from backbone.classifier import FeatureClassifier
from backbone.contract import FeatureBackbone, TapInfo
from backbone.cost import CostReport, profile_model
from backbone.mobilenet_v1 import MobileNetV1, MobileNetV1Backbone
from backbone.registry import BACKBONES, BackboneSpec, backbone_normalization, backbone_options, build_backbone
from backbone.weights import WeightLoadError, load_weights

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "CostReport",
    "FeatureBackbone",
    "FeatureClassifier",
    "MobileNetV1",
    "MobileNetV1Backbone",
    "TapInfo",
    "WeightLoadError",
    "backbone_normalization",
    "backbone_options",
    "build_backbone",
    "load_weights",
    "profile_model",
]
