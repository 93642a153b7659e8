"""Reading YAML documents and turning every problem into one ``ConfigError`` line.

A :class:`Document` keeps the parsed data together with the YAML node tree, so an error found later
(by pydantic or by a cross-reference check) can name the file, the dotted field path and the line:
``<file>: <dotted.field.path>: <problem> (line N)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from heteroscale.errors import ConfigError

Loc = tuple[str | int, ...]

KINDS: tuple[str, ...] = ("catalog", "scenario", "suite", "topology")

# Tags of discriminated unions start with this character; they are dropped from error paths.
UNION_TAG_PREFIX = "~"

M = TypeVar("M", bound=BaseModel)


def format_loc(loc: Sequence[str | int]) -> str:
    """``("services", 0, "roles", "prefill")`` → ``services[0].roles.prefill``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<top>"


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed YAML file: what the user wrote, where it came from, and its node tree."""

    display: str  # how error messages name the file
    path: Path | None  # None for text that did not come from a file
    data: Any
    root: yaml.Node | None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def kind(self) -> str | None:
        if isinstance(self.data, dict):
            value = self.data.get("kind")
            return value if isinstance(value, str) else None
        return None

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node along ``loc`` that exists in the file."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == part:
                        child = value
                        line = key.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def error(self, loc: Loc, problem: str) -> ConfigError:
        """The one-line error for ``problem`` at field path ``loc`` of this file."""
        line = self.line_of(loc)
        where = f" (line {line})" if line is not None and loc else ""
        return ConfigError(f"{self.display}: {format_loc(loc)}: {problem}{where}")

    def validate(self, model: type[M], loc: Loc = (), data: Any = None) -> M:
        """Validate ``data`` (default: the whole document) found at ``loc`` against ``model``."""
        payload = self.data if data is None else data
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise self.validation_error(exc, model, loc) from exc

    def validation_error(self, exc: ValidationError, model: type[BaseModel], loc: Loc) -> ConfigError:
        errors = exc.errors(include_url=False)
        first = errors[0]
        err_loc: Loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p.startswith(UNION_TAG_PREFIX)))
        problem = _describe(first, model, err_loc)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        full = loc + err_loc
        line = self.line_of(full)
        where = f" (line {line})" if line is not None and full else ""
        return ConfigError(f"{self.display}: {format_loc(full)}: {problem}{where}{more}")


def read_document(path: Path, display: str | None = None) -> Document:
    """Read and parse one YAML file, rejecting syntax errors and duplicate keys."""
    shown = display if display is not None else str(path)
    if not path.exists():
        raise ConfigError(f"{shown}: file not found")
    if path.is_dir():
        raise ConfigError(f"{shown}: is a directory, expected a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read: {exc}") from exc
    return parse_document(text, shown, path)


def parse_document(text: str, display: str, path: Path | None = None) -> Document:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _reject_duplicate_keys(root, display)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{display}: {at}invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if data is None:
        raise ConfigError(f"{display}: empty file (expected a mapping with 'kind: {' | '.join(KINDS)}')")
    if not isinstance(data, dict):
        raise ConfigError(f"{display}: expected a mapping at the top level, got {_yaml_type(data)} (line 1)")
    return Document(display=display, path=path, data=data, root=root)


def require_kind(doc: Document, expected: str) -> None:
    """Reject a document whose ``kind`` is missing, unknown or not ``expected``."""
    kind = check_kind(doc)
    if kind != expected:
        raise doc.error(("kind",), f"expected '{expected}', got '{kind}'")


def check_kind(doc: Document) -> str:
    """The document's ``kind`` if it is one we know; a ConfigError otherwise."""
    if "kind" not in doc.data:
        raise ConfigError(f"{doc.display}: kind: missing (expected one of: {', '.join(KINDS)})")
    kind = doc.data["kind"]
    if kind not in KINDS:
        raise doc.error(("kind",), f"unknown kind {kind!r} (expected one of: {', '.join(KINDS)})")
    return str(kind)


def _reject_duplicate_keys(node: yaml.Node, display: str) -> None:
    """PyYAML keeps the last of two equal keys silently; we refuse them instead."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise ConfigError(
                            f"{display}: line {key.start_mark.line + 1}: duplicate key {key.value!r} "
                            f"(first on line {seen[key.value]})"
                        )
                    seen[key.value] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def _yaml_type(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _describe(error: Any, model: type[BaseModel], loc: Loc) -> str:
    """A short problem text for one pydantic error."""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        name = str(loc[-1]) if loc else "?"
        if allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            if close:
                return f"unknown field; did you mean '{close[0]}'?"
            return f"unknown field (allowed: {', '.join(allowed)})"
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and not isinstance(value, type):
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{msg[:1].lower()}{msg[1:]} (got {shown})"
    return f"{msg[:1].lower()}{msg[1:]}"


def _allowed_fields(model: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found by walking ``loc`` down from ``model`` (best effort)."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _only_model(current)
    if current is None:
        return []
    return sorted(current.model_fields)


def _step(tp: Any, part: str | int) -> Any:
    model = _only_model(tp)
    if isinstance(part, str) and model is not None:
        field = model.model_fields.get(part)
        return None if field is None else field.annotation
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _step(args[0], part)
    if isinstance(part, int) and origin in (list, tuple) and args:
        return args[0]
    if isinstance(part, str) and origin is dict and len(args) == 2:
        return args[1]
    return None


def _only_model(tp: Any) -> type[BaseModel] | None:
    """The single BaseModel inside ``tp`` (unwrapping Annotated / Optional / tagged unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _only_model(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        found = [m for m in (_only_model(a) for a in typing.get_args(tp)) if m is not None]
        return found[0] if len(found) == 1 else None
    return None


class StrictModel(BaseModel):
    """The base of every file model: unknown fields rejected, values frozen, no type coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def field_default(cls: type[Any], name: str) -> Any:
    """The declared default of dataclass field ``cls.name`` (slotted dataclasses hide it), so a file
    model and the value type it builds share one source for each default."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)
