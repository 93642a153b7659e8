"""Builders shared by the bad-input tests: a bound on calls that once hung, files, one-line checks."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import yaml

from tests.support.live_env import controller_config

BOUND_S = 10  # each call below takes milliseconds; the bound only turns a hang into a failure


@contextmanager
def no_hang(seconds: int = BOUND_S) -> Iterator[None]:
    def timed_out(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line(message: str, path: Path) -> str:
    assert message.startswith(str(path)), message
    assert "\n" not in message, message
    return message


def controller_file(tmp: Path, section: str, key: str, value: object) -> Path:
    """A valid controller file with ``section``'s ``key`` set to ``value``."""
    path = controller_config(tmp, "http://127.0.0.1:9090", "http://127.0.0.1:1")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = data["services"][0] if section.startswith("services") else data
    for part in section.split(".")[1:] if section.startswith("services") else section.split("."):
        target = target[part]
    target[key] = value
    return write(tmp, "controller.yaml", yaml.safe_dump(data))
