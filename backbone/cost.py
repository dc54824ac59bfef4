"""Mult-adds and parameters counted the way the MobileNets paper does, measured on the model itself.

Forward hooks on every convolution and fully connected layer record what one call computes:
a convolution costs ``output elements x (in_channels / groups) x kernel area`` mult-adds, a linear layer
``output elements x in_features``. Parameters are the weights of those layers: the paper counts neither
BatchNorm nor biases (its Table 2 percentages only add up without them); biases and the model's full
parameter count are reported beside. Layers are grouped by the paper's Table 2 types.

``tools/profile.py`` is the command line over ``profile_classifier`` and ``profile_model``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from backbone.mobilenet_v1 import MobileNetV1

__all__ = [
    "LAYER_TYPES",
    "LayerCost",
    "TypeCost",
    "CostReport",
    "layer_type",
    "profile_model",
    "profile_classifier",
]

# Table 2 of the paper, plus every other convolution (5x5, grouped, transposed, 1-d/3-d).
LAYER_TYPES: tuple[str, ...] = ("conv1x1", "depthwise3x3", "conv3x3", "fc", "other_conv")
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass
class LayerCost:
    """One conv / fc module; ``macs`` summed over its calls, ``output_shape`` of its last call."""

    name: str
    type: str
    macs: int
    params: int
    bias: int
    output_shape: tuple[int, ...]
    calls: int = 1


@dataclass(frozen=True)
class TypeCost:
    macs: int
    params: int
    macs_pct: float
    params_pct: float


@dataclass
class CostReport:
    """Cost of one forward call of a model on given inputs (use a batch of one image for per-image figures)."""

    layers: list[LayerCost]
    total_params: int
    description: str = ""
    by_type: dict[str, TypeCost] = field(init=False)

    def __post_init__(self) -> None:
        self.by_type = {}
        for kind in LAYER_TYPES:
            macs = sum(layer.macs for layer in self.layers if layer.type == kind)
            params = sum(layer.params for layer in self.layers if layer.type == kind)
            self.by_type[kind] = TypeCost(macs, params, _percent(macs, self.macs), _percent(params, self.params))

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        """Weights of the conv and fc layers that ran (the paper's count)."""
        return sum(layer.params for layer in self.layers)

    @property
    def bias_params(self) -> int:
        return sum(layer.bias for layer in self.layers)

    def to_dict(self, per_layer: bool = False) -> dict[str, Any]:
        """Totals and every layer type (zeros included); with ``per_layer`` also ``layers``, one entry per layer."""
        data = {
            "description": self.description,
            "macs": self.macs,
            "params": self.params,
            "bias_params": self.bias_params,
            "total_params": self.total_params,
            "by_type": {kind: asdict(cost) for kind, cost in self.by_type.items()},
        }
        if per_layer:
            data["layers"] = [asdict(layer) for layer in self.layers]
        return data

    def format_table(self, per_layer: bool = False) -> str:
        lines = [self.description] if self.description else []
        if per_layer:
            lines.append(f"{'layer':<34} {'type':<13} {'output':<20} {'mult-adds (M)':>14} {'params':>10}")
            for layer in self.layers:
                shape = "x".join(map(str, layer.output_shape))
                calls = f" x{layer.calls}" if layer.calls > 1 else ""
                name = layer.name + calls
                lines.append(f"{name:<34} {layer.type:<13} {shape:<20} {layer.macs / 1e6:>14.3f} {layer.params:>10,}")
            lines.append("")
        lines.append(f"{'type':<13} {'mult-adds (M)':>14} {'%':>7} {'params (M)':>11} {'%':>7}")
        present = {layer.type for layer in self.layers}  # a type the model does not have gets no row of zeros
        for kind, cost in self.by_type.items():
            if kind not in present:
                continue
            lines.append(
                f"{kind:<13} {cost.macs / 1e6:>14.2f} {cost.macs_pct:>7.2f} {cost.params / 1e6:>11.3f} "
                f"{cost.params_pct:>7.2f}"
            )
        lines.append(f"{'total':<13} {self.macs / 1e6:>14.2f} {100:>7.2f} {self.params / 1e6:>11.3f} {100:>7.2f}")
        lines.append(
            f"params: conv and fc weights as in the paper; biases add {self.bias_params:,}; "
            f"all model parameters (BatchNorm included): {self.total_params:,}"
        )
        return "\n".join(lines)


def layer_type(module: nn.Module) -> str:
    """The Table 2 type of a conv / linear module: conv1x1, depthwise3x3, conv3x3, fc or other_conv."""
    if isinstance(module, nn.Linear):
        return "fc"
    if isinstance(module, nn.Conv2d) and not module.transposed:
        kernel = tuple(module.kernel_size)
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise3x3" if kernel == (3, 3) else "other_conv"
        if module.groups == 1 and kernel == (1, 1):
            return "conv1x1"
        if module.groups == 1 and kernel == (3, 3):
            return "conv3x3"
    return "other_conv"


def profile_model(model: nn.Module, example_inputs: Any, description: str = "") -> CostReport:
    """Run ``model`` once on ``example_inputs`` (no gradients) and count the cost of its conv and fc layers.

    ``example_inputs`` is what the model is called with: a tuple is unpacked into positional arguments, anything
    else is the single argument (an image batch, or a detector's list of image tensors). The model's train/eval
    mode is left as it is. Convolutions called functionally (``F.conv2d``) are not seen.
    """
    names = {module: name for name, module in model.named_modules()}
    costs: dict[nn.Module, LayerCost] = {}

    def record(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        macs = _macs(module, inputs[0], output)
        if module in costs:
            costs[module].macs += macs
            costs[module].calls += 1
            costs[module].output_shape = tuple(output.shape)
            return
        bias = getattr(module, "bias", None)
        costs[module] = LayerCost(
            name=names.get(module, type(module).__name__),
            type=layer_type(module),
            macs=macs,
            params=module.weight.numel(),
            bias=bias.numel() if bias is not None else 0,
            output_shape=tuple(output.shape),
        )

    handles = [
        module.register_forward_hook(record)
        for module in model.modules()
        if isinstance(module, (nn.Linear, *_CONVOLUTIONS))
    ]
    try:
        with torch.no_grad():
            model(*example_inputs) if isinstance(example_inputs, tuple) else model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    total_params = sum(p.numel() for p in model.parameters())
    return CostReport(list(costs.values()), total_params, description)


def _macs(module: nn.Module, input: torch.Tensor, output: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel_area = math.prod(module.kernel_size)
    if module.transposed:  # every input element is spread over out_channels / groups kernels
        return input.numel() * (module.out_channels // module.groups) * kernel_area
    return output.numel() * (module.in_channels // module.groups) * kernel_area


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def profile_classifier(
    width_mult: float = 1.0, resolution: int = 224, variant: str = "separable", num_classes: int = 1000
) -> CostReport:
    """Cost of one ``resolution`` x ``resolution`` image through the ImageNet classifier of the paper's tables.

    The network runs on the meta device: only shapes are computed, so even Conv MobileNet costs nothing to count.
    """
    if variant not in ("separable", "conv", "shallow"):
        raise ValueError(f"variant must be 'separable', 'conv' or 'shallow', got {variant!r}")
    with torch.device("meta"):
        model = MobileNetV1(
            num_classes=num_classes,
            width_mult=width_mult,
            separable=variant != "conv",
            shallow=variant == "shallow",
            dropout=0.0,
        ).eval()
        image = torch.zeros(1, 3, resolution, resolution)
    description = f"MobileNetV1 {width_mult}-{resolution} ({variant}, {num_classes} classes), 1 image"
    return profile_model(model, image, description)
