"""Optimizer groups and schedules."""

from __future__ import annotations

import pytest
import torch

from backbone import MobileNetV1
from tasks.common.optim import OptimizerConfig, build_optimizer, lr_factor, parameter_groups


def test_no_weight_decay_on_depthwise_filters_norms_and_biases() -> None:
    model = MobileNetV1(num_classes=3, width_mult=0.25)
    decay, no_decay = parameter_groups(model, weight_decay=1e-4)
    decayed = {id(p) for p in decay["params"]}
    assert id(model.backbone.conv1.dw.conv.weight) not in decayed
    assert id(model.backbone.conv1.dw.bn.weight) not in decayed
    assert id(model.fc.bias) not in decayed
    assert id(model.backbone.conv1.pw.conv.weight) in decayed
    assert id(model.fc.weight) in decayed
    assert no_decay["weight_decay"] == 0.0
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == total


@pytest.mark.parametrize(
    "name, kind", [("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
def test_build_optimizer_kinds(name: str, kind: type) -> None:
    assert isinstance(build_optimizer(torch.nn.Linear(2, 2), OptimizerConfig(name=name)), kind)


@pytest.mark.parametrize("name", ["rmsprop", "adamw"])
def test_multi_tensor_steps_match_plain_torch(name: str) -> None:
    # build_optimizer steps all tensors at once (fused AdamW, foreach RMSprop): the same updates as torch's own loop.
    torch.manual_seed(0)
    ours = MobileNetV1(num_classes=3, width_mult=0.25)
    plain = MobileNetV1(num_classes=3, width_mult=0.25)
    plain.load_state_dict(ours.state_dict())
    ours.eval(), plain.eval()  # no dropout: both models see the same function
    config = OptimizerConfig(name=name, lr=0.01, weight_decay=1e-3)
    optimizer = build_optimizer(ours, config)
    groups = parameter_groups(plain, config.weight_decay)
    if name == "adamw":
        reference = torch.optim.AdamW(groups, lr=config.lr, eps=1e-6, foreach=False)
    else:
        reference = torch.optim.RMSprop(
            groups, lr=config.lr, alpha=config.rmsprop_decay, eps=config.eps, momentum=config.momentum, foreach=False
        )
    for _ in range(3):
        for model, opt in ((ours, optimizer), (plain, reference)):
            opt.zero_grad()
            model(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))).square().sum().backward()
            opt.step()
    for (key, a), b in zip(ours.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), key


def test_warmup_then_cosine_reaches_the_floor() -> None:
    config = OptimizerConfig(warmup_epochs=1, warmup_factor=0.1, schedule="cosine", min_lr_factor=0.01)
    assert lr_factor(0, 100, 10, config) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, config) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, config) == pytest.approx(0.01)


def test_exponential_decays_per_epoch() -> None:
    config = OptimizerConfig(warmup_epochs=0, schedule="exponential", decay_rate=0.5)
    assert lr_factor(20, 100, 10, config) == pytest.approx(0.25)
