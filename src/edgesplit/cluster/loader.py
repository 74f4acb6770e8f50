"""Reads a cluster file: YAML with line marks, validated into ``ClusterConfig``.

Every error names the file, the line and the key path, e.g.
``cluster.yaml:7: nodes.1.trustd: unknown key (allowed: id, trusted, source, memory, address)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgesplit.cluster.config import ClusterConfig, CrossReferenceError
from edgesplit.errors import ConfigError

KeyPath = tuple[str | int, ...]


def load_cluster(path: Path) -> ClusterConfig:
    """Parse and validate a cluster file; raises ``ConfigError`` naming the bad key and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    return parse_cluster(text, str(path))


def parse_cluster(text: str, name: str = "<cluster>") -> ClusterConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{name}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1: a cluster file is a YAML mapping with `model` and `nodes`")
    lines = key_lines(node)
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, lines, name)) from None


def key_lines(node: yaml.Node | None, path: KeyPath = ()) -> dict[KeyPath, int]:
    """1-based line of every key path in a composed YAML tree (mapping keys and list items)."""
    lines: dict[KeyPath, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key: str | int = key_node.value
            if isinstance(key, str) and key.lstrip("-").isdigit() and key_node.tag.endswith(":int"):
                key = int(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, (*path, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            lines.update(key_lines(item, (*path, i)))
    return lines


def _describe(exc: ValidationError, lines: dict[KeyPath, int], name: str) -> str:
    first = exc.errors()[0]
    loc: KeyPath = tuple(first["loc"])
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, CrossReferenceError):
        loc, message = (*loc, *error.path), str(error)
    elif first["type"] == "extra_forbidden":
        message = f"unknown key{_allowed(loc)}"
    elif first["type"] == "missing":
        message = "missing required key"
    else:
        message = first["msg"].removeprefix("Value error, ")
    if loc[:2] == ("links", "pairs") and ("links", "pairs") not in lines:
        loc = ("links", *loc[2:])  # the file used the list shorthand for links
    keys = tuple(p for p in loc if p in _real_keys(loc, lines))
    line = _line_for(keys, lines)
    where = ".".join(str(p) for p in keys) or "(top level)"
    count = len(exc.errors())
    more = f" (and {count - 1} more problem{'s' * (count > 2)})" if count > 1 else ""
    return f"{name}:{line}: {where}: {message}{more}"


def _real_keys(loc: KeyPath, lines: dict[KeyPath, int]) -> set[str | int]:
    """Drop pydantic's union/validator tags from a loc, keeping the parts that are file keys."""
    keep: set[str | int] = set()
    prefix: KeyPath = ()
    for part in loc:
        if (*prefix, part) in lines or isinstance(part, int) or part in _FIELD_NAMES:
            keep.add(part)
            prefix = (*prefix, part)
    return keep


def _line_for(keys: KeyPath, lines: dict[KeyPath, int]) -> int:
    """The line of the deepest existing prefix of ``keys`` (a missing key points at its parent)."""
    for cut in range(len(keys), 0, -1):
        if keys[:cut] in lines:
            return lines[keys[:cut]]
    return 1


def _allowed(loc: KeyPath) -> str:
    """`` (allowed: …)`` listing the keys of the model the bad key sits in."""
    model: type[BaseModel] | None = ClusterConfig
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = _model_of(field.annotation) if field else None
    if model is None:
        return ""
    return f" (allowed: {', '.join(model.model_fields)})"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or getattr(annotation, "__metadata__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_of(origin) if origin not in (None, annotation) else None


def _all_field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        sub = _model_of(field.annotation)
        if sub is not None:
            names |= _all_field_names(sub, seen)
    return names


_FIELD_NAMES = _all_field_names(ClusterConfig, set())
