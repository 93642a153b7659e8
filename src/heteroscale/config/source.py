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

# Bounds on one YAML document. Real configs nest about 15 levels and hold a few thousand nodes; the
# bounds stop a crafted file (``[[[[…]]]]`` thousands deep, an alias cycle, "billion laughs" aliases
# that multiply) before it exhausts the stack, loops or burns CPU in our checks or in validation.
MAX_DEPTH = 64
MAX_NODES = 200_000  # after expanding aliases: each ``*name`` repeats its anchor's whole value
MAX_INT_BITS = 63  # a signed 64-bit integer; error messages and numpy both stop well before 10^4300
MAX_FILE_BYTES = 16 << 20  # a config is kilobytes; this stops /dev/zero or an endless pipe

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
        typo = _misspelt_required(errors)
        if typo is not None:  # a required key spelt wrong: name the typo, not the key it hides
            given, wanted, parent = typo
            full = (*loc, *parent, given)
            line = self.line_of(full)
            where = f" (line {line})" if line is not None else ""
            others = len(errors) - 2
            more = f" (and {others} more)" if others > 0 else ""
            return ConfigError(
                f"{self.display}: {format_loc(full)}: unknown key {given!r}: did you mean {wanted!r} "
                f"(required, missing)?{where}{more}"
            )
        first = errors[0]
        err_loc: Loc = _clean(first["loc"])
        problem = _describe(first, model, err_loc)
        rest = [format_loc(loc + _clean(e["loc"])) for e in errors[1:]]
        more = ""
        if rest:  # name the others (a few), so that none hides behind a count
            shown = ", ".join(rest[:3]) + (f", … {len(rest) - 3} more" if len(rest) > 3 else "")
            more = f" (and {len(rest)} more: {shown})"
        full = loc + err_loc
        line = self.line_of(full)
        where = f" (line {line})" if line is not None and full else ""
        return ConfigError(f"{self.display}: {format_loc(full)}: {problem}{where}{more}")


def _clean(err_loc: Sequence[int | str]) -> Loc:
    return tuple(p for p in err_loc if not (isinstance(p, str) and p.startswith(UNION_TAG_PREFIX)))


def _misspelt_required(errors: Sequence[Any]) -> tuple[str, str, Loc] | None:
    """(given, wanted, parent) when a required key is missing beside an unknown key that looks like it."""
    for missing in errors:
        if missing["type"] != "missing":
            continue
        where = _clean(missing["loc"])
        if not where or not isinstance(where[-1], str):
            continue
        parent, wanted = where[:-1], where[-1]
        extras = [
            str(_clean(e["loc"])[-1])
            for e in errors
            if e["type"] == "extra_forbidden" and _clean(e["loc"])[:-1] == parent and _clean(e["loc"])
        ]
        close = difflib.get_close_matches(wanted, extras, n=1, cutoff=0.6)
        if close:
            return close[0], wanted, parent
    return None


def read_document(path: Path, display: str | None = None) -> Document:
    """Read and parse one YAML file, rejecting syntax errors and duplicate keys."""
    shown = display if display is not None else str(path)
    if not path.exists():
        raise ConfigError(f"{shown}: file not found")
    if path.is_dir():
        raise ConfigError(f"{shown}: is a directory, expected a YAML file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"{shown}: larger than {MAX_FILE_BYTES >> 20} MiB: not a configuration file")
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read: {exc}") from exc
    return parse_document(text, shown, path)


def parse_document(text: str, display: str, path: Path | None = None) -> Document:
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks for control characters right here
        root = loader.get_single_node()
        if root is not None:
            _check_node_graph(root, display)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{display}: {at}invalid YAML: {problem}") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "byte"
        raise ConfigError(
            f"{display}: line {line}: invalid YAML: unacceptable {what} (control characters are not allowed)"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: invalid YAML: {_first_line(exc)}") from exc
    finally:
        if loader is not None:
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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bound on nesting: its composer recurses once per level, so a file
    nested thousands deep would end in a RecursionError instead of a message."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        # PyYAML's scalar constructors raise plain Python errors on odd values: a date such as
        # 2001-02-30, an integer of thousands of digits, "!!timestamp x", "!!bool maybe", "!!int ''"
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            what = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {what} ({_first_line(exc)}); quote it if it is text", node.start_mark
            ) from exc
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:  # no field counts that far
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {value.bit_length()} bits, beyond any field's range", node.start_mark
            )
        return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_node_graph(root: yaml.Node, display: str) -> None:
    """Refuse duplicate keys, alias cycles, and documents too deep or too large once aliases expand.

    An alias is the very node its anchor names, so the composed tree is a graph: each node is visited
    once (depth-first, without recursion) and its expanded size and depth are computed from its
    children's, which counts what aliases would repeat without repeating it.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # the ancestors of the node being visited
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if finished:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            depth[key] = 1 + max((depth[id(kid)] for kid in kids), default=0)
            if size[key] > MAX_NODES:
                raise ConfigError(
                    f"{display}: line {line}: this value expands to more than {MAX_NODES} YAML nodes "
                    "(each alias *name repeats its anchor's whole value)"
                )
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"{display}: line {line}: nested more than {MAX_DEPTH} levels deep (through aliases)")
            continue
        if key in size:  # shared through an alias and already measured
            continue
        if key in open_nodes:
            raise ConfigError(f"{display}: line {line}: recursive alias: the value anchored here contains itself")
        open_nodes.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _reject_duplicate_keys(node, display)
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


def _reject_duplicate_keys(node: yaml.MappingNode, display: str) -> None:
    """PyYAML keeps the last of two equal keys silently; we refuse them instead."""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                raise ConfigError(
                    f"{display}: line {key.start_mark.line + 1}: duplicate key {key.value!r} "
                    f"(first on line {seen[key.value]})"
                )
            seen[key.value] = key.start_mark.line + 1


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
    """The base of every file model: unknown fields rejected, values frozen, no type coercion, and no
    ``.inf`` / ``.nan`` in any float field (an infinite duration or target is never meant)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def field_default(cls: type[Any], name: str) -> Any:
    """The declared default of dataclass field ``cls.name`` (slotted dataclasses hide it), so a file
    model and the value type it builds share one source for each default."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)
