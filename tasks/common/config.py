"""YAML run configs: load, apply ``dotted.key=value`` overrides, and check every key against the typed signature
it maps onto, so a misspelled key or a wrong type fails before any work starts, naming the key and the file."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tasks.common.errors import ConfigError

__all__ = [
    "ConfigLoader",
    "DuplicateKeyError",
    "parse_yaml",
    "load_config",
    "apply_overrides",
    "check_section",
    "blame",
    "parameter_types",
    "signature_keys",
    "dump_config",
]


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python objects are ever constructed) reading numbers as YAML 1.2 does: PyYAML
    follows YAML 1.1, where ``1e-3`` and ``3e-4`` (no dot) are strings, which is how nearly everyone writes a
    learning rate."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice: PyYAML would keep the last value without a word."""


def _refuse_duplicate_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias of a node already checked (anchors may even make the graph recursive)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, Any], int] = {}
        for key_node, value_node in node.value:
            name = f"{path}.{key_node.value}" if path else str(key_node.value)
            # A merge key (``<<: *defaults``) is no duplicate: the keys after it override the defaults on purpose.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in first_line:
                    raise DuplicateKeyError(f"duplicate key {name} on line {line} (first on line {first_line[key]})")
                first_line[key] = line
            _refuse_duplicate_keys(value_node, name, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path}[{index}]", seen)


def parse_yaml(text: str) -> Any:
    """YAML text to plain Python values (safely, with YAML 1.2 numbers: see ``ConfigLoader``). A key given twice in
    one mapping raises ``DuplicateKeyError`` naming it and its lines."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _one_line(error: yaml.YAMLError) -> str:
    """A YAML error as one line, with the line and column where it was found."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error)
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + "; ".join(part for part in (error.context, error.problem) if part)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(error)}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(config: dict[str, Any], overrides: Sequence[str], source: str = "command line") -> dict[str, Any]:
    """Return a copy of ``config`` with each ``a.b.c=value`` applied; values are parsed as YAML (``0.5``, ``true``,
    ``[1, 2]``, ``null``). Keys may be new: the schema check that follows rejects the unknown ones."""
    config = copy.deepcopy(config)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{source}: override {override!r} is not of the form dotted.key=value")
        try:
            value = parse_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as error:
            problem = _one_line(error)
            raise ConfigError(f"{source}: override {override!r}: value is not valid YAML: {problem}") from error
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: override {override!r}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return config


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a YAML config and apply overrides. The result records its source under the key ``_source`` and the
    overrides under ``_overrides`` ({dotted key: the override as given}), so that a mistake is blamed on its origin
    (``blame``)."""
    path = Path(path)
    config = apply_overrides(_read_yaml(path), overrides)
    config["_source"] = str(path)
    config["_overrides"] = {override.partition("=")[0]: override for override in overrides}
    return config


def blame(source: str, key: str, overrides: Mapping[str, str] | None = None) -> str:
    """Where the dotted ``key`` of a config was set: ``override KEY=VALUE`` when a command-line override set it (or
    a key below it), else ``source``, the config file."""
    for dotted, override in reversed(list((overrides or {}).items())):
        if dotted == key or dotted.startswith(key + "."):
            return f"override {override}"
    return source


def dump_config(config: Mapping[str, Any], path: str | Path) -> None:
    clean = {key: value for key, value in config.items() if not key.startswith("_")}
    Path(path).write_text(yaml.safe_dump(clean, sort_keys=False))


def _constructors(target: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The functions whose keyword parameters ``target`` accepts: a function itself; a class's ``__init__``, then,
    while it passes ``**kwargs`` on, the ``__init__`` of each base class up the MRO (a task's data module forwards
    the settings every task shares to ``TaskDataModule``)."""
    if not inspect.isclass(target):
        return [target]
    chain: list[Callable[..., Any]] = []
    for cls in inspect.getmro(target):
        if "__init__" not in vars(cls) or cls is object:
            continue
        chain.append(cls.__init__)
        kinds = {param.kind for param in inspect.signature(cls.__init__).parameters.values()}
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            break
    return chain or [target.__init__]


def signature_keys(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword parameters a config section may set for ``target`` (a function, class or dataclass), the
    subclass's own first; those a class forwards to its base through ``**kwargs`` included."""
    keys: dict[str, inspect.Parameter] = {}
    for init in _constructors(target):
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                keys.setdefault(name, param)
    return keys


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    if dataclasses.is_dataclass(target):
        inits: list[Any] = [target]
    else:
        inits = _constructors(target)
    hints: dict[str, Any] = {}
    for init in inits:
        try:
            found = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references in third-party code: skip type checks there
            found = {}
        hints = {**found, **hints}
    return hints


def _matches(value: Any, annotation: Any) -> bool:
    if annotation in (Any, inspect.Parameter.empty, object):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return False
        inner = [arg for arg in args if arg is not Ellipsis]
        return all(_matches(item, inner[0]) for item in value) if len(inner) == 1 else True
    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        return isinstance(value, dict)
    return True  # other classes (callbacks, modules...) are the target's business


def _describe(annotation: Any) -> str:
    """An annotation as a user reads it: ``int or None``, ``one of 'relu', 'relu6'``, ``list of float``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(value) for value in args)
    if annotation is None or annotation is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))  # None last, as Optional[X] lists it
    name = getattr(origin or annotation, "__name__", None)
    inner = [arg for arg in args if arg is not Ellipsis]
    if name is not None and len(inner) == 1:
        return f"{name} of {_describe(inner[0])}"
    return name or str(annotation).replace("typing.", "")


def parameter_types(target: Callable[..., Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """{keyword parameter of ``target``: its annotation (resolved where possible)}, without ``exclude``."""
    params = signature_keys(target)
    hints = _type_hints(target)
    return {name: hints.get(name, param.annotation) for name, param in params.items() if name not in exclude}


def check_section(
    section: Mapping[str, Any],
    target: Callable[..., Any] | Mapping[str, Any],
    prefix: str,
    source: str,
    ignore: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> None:
    """Check that every key of ``section`` is a parameter of ``target`` (a callable, or a ready {key: annotation}
    mapping from ``parameter_types``) and that its value fits the annotation.

    Raises ConfigError such as ``configs/x.yaml: unknown key model.widht_mult (did you mean width_mult?)``, or
    ``override model.widht_mult=0.5: unknown key ...`` where one of ``overrides`` (``_overrides`` of
    ``load_config``) set the key.
    """
    allowed = dict(target) if isinstance(target, Mapping) else parameter_types(target)
    for key, value in section.items():
        if key in ignore:
            continue
        where = blame(source, f"{prefix}.{key}", overrides)
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            valid = ", ".join(sorted(k for k in allowed if k not in ignore))
            raise ConfigError(f"{where}: unknown key {prefix}.{key}{hint}; valid keys: {valid}")
        annotation = allowed[key]
        if isinstance(annotation, str):  # unresolved forward reference
            continue
        if not _matches(value, annotation):
            raise ConfigError(
                f"{where}: {prefix}.{key} must be {_describe(annotation)}, got {value!r} ({type(value).__name__})"
            )
