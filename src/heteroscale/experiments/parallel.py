"""Run independent simulations (contenders × seeds, ratio splits, …) on every local core or on Ray.

``run_all(fn, shared, tasks)`` returns ``[fn(shared, t) for t in tasks]`` in task order, whatever the
backend and the number of jobs, so a parallel run prints exactly what a serial one does: each task is
a deterministic simulation (seeded loads, virtual time, a HiGHS MILP bounded by nodes rather than by
wall-clock time in the simulator), and results are gathered by position, never by completion order.

Backends:

* ``local`` with ``jobs`` > 1 — a process pool of ``jobs`` workers (spawned: no state leaks in from the
  parent); ``shared`` (e.g. a :class:`~heteroscale.experiments.compare.Comparison` with its loads and
  targets) is sent once per worker, each task then only names its work.
* ``ray`` — one Ray task per item on the cluster ``ray.init()`` finds (``RAY_ADDRESS``, else a local
  instance it starts and stops); ``shared`` is put once in Ray's object store. Needs the optional
  extra: ``pip install 'heteroscale[ray]'``. Outputs written with ``--out`` land on the node that ran
  the task, so on a cluster of several machines ``--out`` needs a shared file system.

``fn`` must be a module-level function (workers import it by name). A deliberate error raised in a
task (:class:`~heteroscale.errors.HeteroScaleError`) comes back as itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from heteroscale.errors import ConfigError, HeteroScaleError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")
BACKENDS = ("local", "ray")


@dataclass(frozen=True, slots=True)
class Step:
    """Progress of an experiment: ``done`` of ``total`` steps of one ``phase`` (the label says which)."""

    label: str
    done: int
    total: int
    phase: str = "runs"


ProgressFn = Callable[[Step], None]

# a pool worker's copy of ``shared``, set once by its initializer so that tasks need not carry it
_WORKER: dict[str, Any] = {}


def default_jobs() -> int:
    """Every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def run_all(
    fn: Callable[[S, T], R],
    shared: S,
    tasks: Sequence[T],
    *,
    jobs: int = 1,
    backend: str = "local",
    progress: ProgressFn | None = None,
    label: Callable[[T], str] = str,
) -> list[R]:
    """``[fn(shared, t) for t in tasks]``, in task order, on ``jobs`` local processes or on Ray; ``progress``
    hears of each task as it starts (serial) or ends (parallel), and once when all are done."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be ≥ 1, got {jobs}")
    if backend == "ray":
        return _run_ray(fn, shared, tasks, progress, label)
    if jobs == 1 or len(tasks) <= 1:
        out = []
        for i, task in enumerate(tasks):
            if progress is not None:
                progress(Step(label(task), i, len(tasks)))
            out.append(fn(shared, task))
        if progress is not None and tasks:
            progress(Step("done", len(tasks), len(tasks)))
        return out
    return _run_pool(fn, shared, tasks, min(jobs, len(tasks)), progress, label)


def _init_worker(shared: object) -> None:
    _WORKER["shared"] = shared


def _call(fn: Callable[[Any, T], R], task: T) -> R:
    return fn(_WORKER["shared"], task)


def _run_pool(
    fn: Callable[[S, T], R],
    shared: S,
    tasks: Sequence[T],
    jobs: int,
    progress: ProgressFn | None,
    label: Callable[[T], str],
) -> list[R]:
    results: dict[int, R] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(shared,)) as pool:
        pending: dict[Future[R], int] = {pool.submit(_call, fn, task): i for i, task in enumerate(tasks)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    results[i] = future.result()  # re-raises the task's own error
                    if progress is not None:
                        progress(Step(f"{label(tasks[i])} done", len(results), len(tasks)))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(tasks))]


def _ray_call(fn: Callable[[S, T], R], shared: S, task: T) -> R:
    return fn(shared, task)


def _run_ray(
    fn: Callable[[S, T], R],
    shared: S,
    tasks: Sequence[T],
    progress: ProgressFn | None,
    label: Callable[[T], str],
) -> list[R]:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--backend ray needs Ray: pip install 'heteroscale[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        ray.init(logging_level=logging.ERROR, log_to_driver=False)
    try:
        shared_ref = ray.put(shared)
        remote: Any = ray.remote(_ray_call)
        refs = [remote.remote(fn, shared_ref, task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        left = list(refs)
        while left:
            done, left = ray.wait(left, num_returns=1)
            if progress is not None:
                progress(Step(f"{label(tasks[index[done[0]]])} done", len(refs) - len(left), len(refs)))
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, HeteroScaleError):
                raise exc.cause from None
            raise
    finally:
        if started:
            ray.shutdown()
