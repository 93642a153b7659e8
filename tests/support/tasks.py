"""Module-level tasks for tests of parallel runs: a spawned worker imports them by name, so they live
in a module that imports little."""

from __future__ import annotations

from heteroscale.errors import SloUnreachable


def square_plus(offset: int, x: int) -> int:
    """``offset + x²``; a negative ``x`` raises a deliberate error, as a failing simulation would."""
    if x < 0:
        raise SloUnreachable(f"task {x}")
    return offset + x * x
