"""Reads a cluster file: YAML with line marks, validated into ``ClusterConfig``.

Every error names the file, the line and the key path, e.g.
``cluster.yaml:7: nodes.1.trustd: unknown key (allowed: id, trusted, source, memory, address)``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from edgesplit.cluster.config import ClusterConfig, CrossReferenceError
from edgesplit.errors import ConfigError

KeyPath = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


def load_cluster(path: Path) -> ClusterConfig:
    """Parse and validate a cluster file; raises ``ConfigError`` naming the bad key and line."""
    return parse_cluster(read_config_text(path, "cluster file", ConfigError), str(path))


def parse_cluster(text: str, name: str = "<cluster>") -> ClusterConfig:
    return parse_yaml_model(
        text, name, ClusterConfig, ConfigError, "a cluster file is a YAML mapping with `model` and `nodes`"
    )


def read_config_text(path: Path, what: str, error: type[ConfigError]) -> str:
    """A config file's text, or ``error`` saying which file could not be read and why."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None


def parse_yaml_model(
    text: str,
    name: str,
    model: type[M],
    error: type[ConfigError],
    shape_hint: str,
    *,
    list_allowed_keys: bool = True,
) -> M:
    """YAML text → ``model``; every problem is one ``error`` line ``name:line: key.path: message``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{name}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{name}:1: {shape_hint}")
    lines = key_lines(node)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(describe_validation(exc, lines, name, model, list_allowed_keys)) from None


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


def describe_validation(
    exc: ValidationError,
    lines: dict[KeyPath, int],
    name: str,
    model: type[BaseModel],
    list_allowed_keys: bool = True,
) -> str:
    """``file:line: key.path: message`` for the first problem (and how many more there are)."""
    first = exc.errors()[0]
    loc: KeyPath = tuple(first["loc"])
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, CrossReferenceError):
        loc, message = (*loc, *error.path), str(error)
    elif first["type"] == "extra_forbidden":
        message = f"unknown key{_allowed(loc, model) if list_allowed_keys else ''}"
    elif first["type"] == "missing":
        message = "missing required key"
    else:
        message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "kind")
    if loc[:2] == ("links", "pairs") and ("links", "pairs") not in lines:
        loc = ("links", *loc[2:])  # the file used the list shorthand for links
    keys = _file_keys(loc, lines, _field_names(model))
    line = _line_for(keys, lines)
    where = ".".join(str(p) for p in keys) or "(top level)"
    count = len(exc.errors())
    more = f" (and {count - 1} more problem{'s' * (count > 2)})" if count > 1 else ""
    return f"{name}:{line}: {where}: {message}{more}"


def _file_keys(loc: KeyPath, lines: dict[KeyPath, int], field_names: frozenset[str]) -> KeyPath:
    """Drop pydantic's union/validator tags from a loc, keeping the parts that are file keys."""
    kept: KeyPath = ()
    for part in loc:
        if (*kept, part) in lines or isinstance(part, int) or part in field_names:
            kept = (*kept, part)
    return kept


def _line_for(keys: KeyPath, lines: dict[KeyPath, int]) -> int:
    """The line of the deepest existing prefix of ``keys`` (a missing key points at its parent)."""
    for cut in range(len(keys), 0, -1):
        if keys[:cut] in lines:
            return lines[keys[:cut]]
    return 1


def _allowed(loc: KeyPath, root: type[BaseModel]) -> str:
    """`` (allowed: …)`` listing the keys of the model the bad key sits in."""
    model: type[BaseModel] | None = root
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


@functools.cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every field name anywhere in ``model``'s tree (union members included)."""
    return frozenset(_names_in(model, set()))


def _names_in(annotation: Any, seen: set[type[BaseModel]]) -> set[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return set()
        seen.add(annotation)
        found = set(annotation.model_fields)
        for field in annotation.model_fields.values():
            found |= _names_in(field.annotation, seen)
        return found
    names: set[str] = set()
    for arg in get_args(annotation):
        names |= _names_in(arg, seen)
    return names
