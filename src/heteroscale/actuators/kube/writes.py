"""The writes of one plan, made in order: a failure is recorded and the rest go on, except a refusal by
the fence (the controller can no longer prove it leads), which abandons every write left."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from heteroscale.actuators.kube.api import FencedError, error_kind
from heteroscale.errors import PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Write:
    """One write of a plan: ``do`` it, then ``done`` (bookkeeping) if it went through."""

    what: str
    do: Callable[[], object]
    done: Callable[[], object]


def run_writes(writes: list[Write], errors: list[str]) -> tuple[str | None, list[str]]:
    """Make the writes in order; a failure is recorded in ``errors`` and the rest go on, except a
    refusal by the fence, which abandons every write left. Returns (why fenced or None, abandoned)."""
    for i, write in enumerate(writes):
        try:
            write.do()
        except FencedError as exc:
            abandoned = [w.what for w in writes[i:]]
            errors.append(f"fenced: {exc}; {len(abandoned)} write(s) abandoned")
            log.warning("fenced: %s; abandoning %d write(s): %s", exc, len(abandoned), "; ".join(abandoned))
            return str(exc), abandoned
        except (TransientActuationError, PermanentActuationError) as exc:
            errors.append(f"{write.what}: {error_kind(exc)}: {exc}")
            continue
        write.done()
    return None, []
