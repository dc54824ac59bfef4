"""Safe loading of MobileNetV1 weights: our state dicts, our Lightning checkpoints, and timm's ``mobilenetv1_*``.

Files are read with ``torch.load(..., weights_only=True)`` or safetensors, never by plain unpickling, so a file
whose pickle would import or call code is refused without running it. The file's keys are mapped onto the
``MobileNetV1Backbone`` inside the target model (and onto the classifier when the target is a classifier on it),
then checked: missing keys, unexpected keys and shape mismatches are reported together, never loaded partially
without saying so.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PosixPath, PurePosixPath, PureWindowsPath, WindowsPath

import torch
from torch import nn

from backbone.classifier import FeatureClassifier
from backbone.mobilenet_v1 import MobileNetV1Backbone

__all__ = [
    "WeightLoadError",
    "LoadResult",
    "load_weights",
    "load_weights_report",
    "read_state_dict",
    "find_backbone",
    "unsafe_pickle_reason",
]

logger = logging.getLogger(__name__)

_OURS_ANCHOR = "conv0.conv.weight"
_TIMM_ANCHOR = "conv_stem.weight"
_CLASSIFIER_KEYS = ("weight", "bias")
# Containers that training scripts wrap a state dict in (Lightning, timm's train.py, common custom scripts).
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_SHOWN = 10
# Besides tensors and plain containers, paths are allowed: Lightning checkpoints keep them among the saved
# hyper-parameters, and unpickling one only builds a path object from strings.
_SAFE_GLOBALS = [PurePosixPath, PosixPath, PureWindowsPath, WindowsPath]


class WeightLoadError(RuntimeError):
    """A weights file cannot be loaded into the model: unreadable, unsafe, or not matching it."""


@dataclass
class LoadResult:
    """What ``load_weights`` did: the file's format, the tensors loaded, and what ``strict=False`` skipped."""

    path: str
    source_format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    classifier_loaded: bool = False


def load_weights(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = True, prefix: str | None = None
) -> nn.Module:
    """Load MobileNetV1 weights from ``path`` into the ``MobileNetV1Backbone`` found in ``model``; return ``model``.

    Args:
        model: a ``MobileNetV1Backbone``, a ``MobileNetV1`` (or any ``FeatureClassifier`` on the backbone), or any
            module holding exactly one backbone (a detector, a distillation student). A classifier target also
            gets the file's classifier when its shape matches; otherwise (another number of classes, a
            backbone-only file) its ``fc`` keeps its initialisation, and a classifier of another size is named in
            a warning.
        path: .pt/.pth/.bin (torch) or .safetensors file holding our keys (``conv5.pw.conv.weight`` under any
            prefix, e.g. ``backbone.`` or Lightning's ``model.backbone.body.``) or timm's ``mobilenetv1_*`` keys.
        strict: False tolerates missing and unexpected keys (logged as a warning; ``load_weights_report``
            returns them), never shape mismatches, and never a file of which nothing matches.
        prefix: the key prefix of the backbone in the file, for files holding several (teacher and student).

    Raises:
        WeightLoadError: naming the file, with the missing / unexpected keys and shape mismatches.
    """
    load_weights_report(model, path, strict=strict, prefix=prefix)
    return model


def load_weights_report(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = True, prefix: str | None = None
) -> LoadResult:
    """``load_weights``, returning what was loaded and what ``strict=False`` skipped."""
    path_str = os.fspath(path)
    target, target_path = find_backbone(model)
    state = read_state_dict(path_str)
    backbone_state, classifier_state, unexpected, source_format = _to_backbone_keys(state, path_str, prefix)

    expected = target.state_dict()
    # BatchNorm accepts files without num_batches_tracked (older exports); it only feeds momentum=None.
    missing = [k for k in expected if k not in backbone_state and not k.endswith("num_batches_tracked")]
    unexpected = unexpected + [k for k in backbone_state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in backbone_state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    matched = [k for k in backbone_state if k in expected and backbone_state[k].shape == expected[k].shape]
    if mismatched or not matched or (strict and (missing or unexpected)):
        raise WeightLoadError(_describe_failure(path_str, target, source_format, missing, unexpected, mismatched))

    target.load_state_dict({k: backbone_state[k] for k in matched}, strict=False)
    if source_format == "timm" and target.activation != "relu6":
        logger.warning(
            "%s: timm's mobilenetv1 weights were trained with ReLU6; this model uses %s", path_str, target.activation
        )
    result = LoadResult(path_str, source_format, loaded=matched, missing=missing, unexpected=unexpected)
    if isinstance(model, FeatureClassifier) and model.backbone is target:
        result.classifier_loaded = _load_classifier(model, classifier_state, path_str)
    if missing or unexpected:
        skipped = "; ".join(filter(None, [_listing("missing", missing), _listing("unexpected", unexpected)]))
        logger.warning("%s: loaded %d tensors, skipped (strict=False) %s", path_str, len(matched), skipped)
    where = f" at {target_path!r}" if target_path else ""
    logger.info("%s: loaded %d tensors (%s format) into the backbone%s", path_str, len(matched), source_format, where)
    return result


def find_backbone(model: nn.Module) -> tuple[MobileNetV1Backbone, str]:
    """The single ``MobileNetV1Backbone`` inside ``model`` and its module path ("" when ``model`` is one)."""
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, MobileNetV1Backbone)]
    if not found:
        raise TypeError(f"{type(model).__name__} contains no MobileNetV1Backbone to load weights into")
    if len(found) > 1:
        names = [name or "<root>" for name, _ in found]
        raise TypeError(f"{type(model).__name__} holds {len(found)} MobileNetV1Backbones {names}; pass the one to load")
    name, module = found[0]
    return module, name  # type: ignore[return-value]


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a flat ``{key: tensor}`` dict from a torch or safetensors file, safely (no code from the file runs).

    A Lightning / training checkpoint is unwrapped: its ``state_dict`` (or ``model_state_dict`` / ``model``) entry.
    """
    path_str = os.fspath(path)
    file = Path(path_str)
    if not file.is_file():
        raise WeightLoadError(f"{path_str}: no such weights file")
    if file.suffix == ".safetensors" or _looks_like_safetensors(file):
        obj = _read_safetensors(path_str)
    else:
        obj = _read_torch(path_str)

    for key in _NESTED_STATE_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise WeightLoadError(f"{path_str}: not a weights file: holds a {type(obj).__name__}, not a state dict")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not obj or not_tensors:
        shown = _listing("non-tensor entries", not_tensors) if not_tensors else "it is empty"
        raise WeightLoadError(f"{path_str}: not a state dict of tensors: {shown}")
    return {str(k): v for k, v in obj.items()}


def _read_torch(path: str) -> object:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... depending on the damage
        message = str(error)
        reason = unsafe_pickle_reason(error)
        if reason is not None:
            raise WeightLoadError(
                f"{path}: refused: the file's pickle would import or call {reason}, which safe (weights_only) "
                "loading does not allow; nothing from it was run. Re-save plain tensors (state_dict) or safetensors."
            ) from error
        raise WeightLoadError(
            f"{path}: not a readable torch weights file (truncated or corrupt?): {type(error).__name__}: "
            f"{message.splitlines()[0] if message else ''}"
        ) from error


def unsafe_pickle_reason(error: BaseException) -> str | None:
    """What a weights-only ``torch.load`` refused to import or call, when ``error`` is that refusal; else None."""
    message = str(error)
    return _unsafe_global(message) if "Weights only load failed" in message else None


def _unsafe_global(message: str) -> str:
    if match := re.search(r"Unsupported global: GLOBAL ([\w.]+)", message):
        return match.group(1)
    if match := re.search(r"Unsupported operand (\d+)", message):
        return f"pickle opcode {match.group(1)}"
    return "something outside the tensor allow-list"


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as error:  # SafetensorError, OSError
        raise WeightLoadError(f"{path}: not a readable safetensors file (truncated or corrupt?): {error}") from error


def _looks_like_safetensors(file: Path) -> bool:
    """Safetensors files start with an 8-byte little-endian header length, then a JSON object."""
    with file.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < file.stat().st_size


def _to_backbone_keys(
    state: dict[str, torch.Tensor], path: str, prefix: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str], str]:
    """Split the file into (backbone keys in our names, classifier {file key: tensor} (its weight and bias), unexpected
    keys, format)."""
    if prefix is None:
        anchors = [(k[: -len(_OURS_ANCHOR)], "ours") for k in state if k.endswith(_OURS_ANCHOR)]
        # timm keys only when none of ours: a distillation checkpoint may hold a timm teacher beside our student.
        anchors = anchors or [(k[: -len(_TIMM_ANCHOR)], "timm") for k in state if k.endswith(_TIMM_ANCHOR)]
        anchors = [(p, f) for p, f in anchors if p == "" or p.endswith(".")]
        if not anchors:
            raise WeightLoadError(
                f"{path}: no MobileNetV1 weights found (no key ending in {_OURS_ANCHOR!r} or {_TIMM_ANCHOR!r}); "
                f"{_listing('keys in the file', list(state))}"
            )
        if len(anchors) > 1:
            raise WeightLoadError(
                f"{path}: holds {len(anchors)} MobileNetV1 backbones under prefixes {[p for p, _ in anchors]}; "
                "pass prefix= to choose one"
            )
        prefix, source_format = anchors[0]
    else:
        prefix = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        source_format = "timm" if f"{prefix}{_TIMM_ANCHOR}" in state else "ours"

    under = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if source_format == "timm":
        backbone, classifier, unexpected = _from_timm(under)
        classifier = {f"{prefix}classifier.{k}": v for k, v in classifier.items()}
    else:
        backbone, classifier, unexpected = under, {}, []
        # A MobileNetV1's classifier sits beside its backbone: "<p>backbone.conv0..." and "<p>fc.weight".
        if prefix.endswith("backbone.") or prefix == "":
            parent = prefix[: -len("backbone.")] if prefix else ""
            classifier = {
                f"{parent}fc.{k}": state[f"{parent}fc.{k}"] for k in _CLASSIFIER_KEYS if f"{parent}fc.{k}" in state
            }
            if prefix == "":
                backbone = {k: v for k, v in under.items() if not k.startswith("fc.")}
    unexpected = [prefix + k for k in unexpected]
    return backbone, classifier, unexpected, source_format


_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(conv_dw|bn1|conv_pw|bn2)\.(.+)")
_TIMM_BLOCK_PART = {"conv_dw": "dw.conv", "bn1": "dw.bn", "conv_pw": "pw.conv", "bn2": "pw.bn"}


def _from_timm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """timm ``mobilenetv1_*`` keys -> ours: conv_stem/bn1 -> conv0, blocks.i.j (in order) -> conv1..conv13."""
    blocks = sorted({(int(m[1]), int(m[2])) for m in map(_TIMM_BLOCK.fullmatch, state) if m})
    layer_of = {block: index for index, block in enumerate(blocks, start=1)}
    backbone: dict[str, torch.Tensor] = {}
    classifier: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state.items():
        block = _TIMM_BLOCK.fullmatch(key)
        if block:
            part = _TIMM_BLOCK_PART[block[3]]
            backbone[f"conv{layer_of[(int(block[1]), int(block[2]))]}.{part}.{block[4]}"] = value
        elif key == "conv_stem.weight":
            backbone["conv0.conv.weight"] = value
        elif key.startswith("bn1."):
            backbone[f"conv0.bn.{key[len('bn1.') :]}"] = value
        elif key in ("classifier.weight", "classifier.bias"):
            classifier[key.split(".")[1]] = value
        else:
            unexpected.append(key)
    return backbone, classifier, unexpected


def _load_classifier(model: FeatureClassifier, classifier: dict[str, torch.Tensor], path: str) -> bool:
    """Load the file's classifier ({file key: tensor}) into ``model.fc`` when its shapes fit; else say which keys
    were skipped and why (a warning: a head left at its random initialisation must not pass unnoticed)."""
    expected = model.fc.state_dict()
    file_keys = {key.rsplit(".", 1)[1]: key for key in classifier}  # weight -> classifier.weight
    parts = {part: classifier[key] for part, key in file_keys.items()}
    if set(parts) != set(expected):
        logger.info("%s: no classifier in the file; fc keeps its initialisation", path)
        return False
    if any(parts[k].shape != expected[k].shape for k in expected):
        file_shape, model_shape = tuple(parts["weight"].shape), tuple(expected["weight"].shape)
        why = (
            f"{file_shape[0]} classes in the file, {model_shape[0]} in the model"
            if file_shape[1:] == model_shape[1:]
            else f"shape {file_shape} in the file, {model_shape} in the model"
        )
        logger.warning(
            "%s: %s not loaded: %s: fc is left at its initialisation",
            path,
            ", ".join(file_keys[k] for k in expected),
            why,
        )
        return False
    model.fc.load_state_dict(parts)
    return True


def _listing(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{len(keys)} {what}: {', '.join(keys[:_SHOWN])}{more}"


def _describe_failure(
    path: str,
    target: MobileNetV1Backbone,
    source_format: str,
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
) -> str:
    variant = "separable" if target.separable else "conv"
    variant += ", shallow" if target.shallow else ""
    problems = [
        _listing(what, keys)
        for what, keys in (
            ("shape mismatches (different width_mult?)", mismatched),
            ("missing keys (in the model, not in the file)", missing),
            ("unexpected keys (in the file, not in the model)", unexpected),
        )
        if keys
    ]
    # One line: the tools print a user's error as a single "error: ..." line.
    return (
        f"{path}: cannot load these {source_format}-format weights into MobileNetV1Backbone"
        f"(width_mult={target.width_mult}, {variant}): "
        + ("; ".join(problems) if problems else "no tensor of the file matches the model")
    )
