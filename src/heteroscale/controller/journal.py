"""Append-only JSONL journal of DecisionRecords."""

from __future__ import annotations

import dataclasses
import json
import math
from enum import Enum
from pathlib import Path
from typing import IO, Any

from heteroscale.domain.decision import DecisionRecord


def to_plain(value: Any) -> Any:
    """Dataclasses, enums, tuples and dicts → JSON-ready plain data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):  # NaN never reaches the journal
        return None
    return value


class Journal:
    """Writes one JSON line per DecisionRecord; keeps the records in memory only if asked."""

    def __init__(self, path: Path | None = None, keep: bool = False) -> None:
        self._stream: IO[str] | None = path.open("a", encoding="utf-8") if path is not None else None
        self.keep = keep
        self.records: list[DecisionRecord] = []
        self.count = 0

    def append(self, record: DecisionRecord) -> None:
        self.count += 1
        if self.keep:
            self.records.append(record)
        if self._stream is not None:
            self._stream.write(json.dumps(to_plain(record), sort_keys=True) + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
