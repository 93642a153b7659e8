"""API calls with error translation, bounded retries and a write fence.

Every API failure is translated with ``raise … from``: 409 → :class:`ConflictError` (the caller re-reads
and retries with backoff), 429 and 5xx → :class:`TransientActuationError` honouring ``Retry-After``,
time-outs and connection errors → transient, other 4xx → :class:`PermanentActuationError`. Retries are
bounded in count (``max_attempts``) and time (``retry_budget_s``, on the injected clock).

A write (``write=True``) first asks the fence, before every attempt, when one is set: a controller that
can no longer prove it holds the leader Lease must not change the cluster (``controller/leader.py``
sets it; :class:`FencedError` is never retried).

Lists are paginated (:meth:`KubeApi.list_all`: ``limit`` / ``continue``, ``list_page_size`` objects a
page), so a large answer never sits in memory whole; each page can be cut down to what the caller
keeps. An expired ``continue`` token (410 Gone) restarts the list from the beginning, a bounded number
of times.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from heteroscale.actuators.kube.naming import PREFIX
from heteroscale.clock import Clock, WallClock
from heteroscale.domain.topology import Level
from heteroscale.errors import PermanentActuationError, TransientActuationError

log = logging.getLogger(__name__)

MAX_PAGES = 10_000  # pages of one list (bounds the loop)
LIST_RESTARTS = 2  # lists started again after their continue token expired
T = TypeVar("T")


class ConflictError(TransientActuationError):
    """409: the object changed (or exists) since we read it; re-read and try again."""


class NotFoundError(PermanentActuationError):
    """404: the object does not exist."""


class GoneError(TransientActuationError):
    """410: a list's ``continue`` token expired; list again from the beginning."""


class FencedError(PermanentActuationError):
    """A write refused before it was sent: this controller cannot prove it still leads."""


def translate(exc: Exception, what: str, backoff_s: float = 1.0) -> TransientActuationError | PermanentActuationError:
    """An API or transport exception as a HeteroScale actuation error (to be raised ``from exc``)."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _api_message(exc)
        if status == 409:
            return ConflictError(f"{what}: 409 conflict: {message}", backoff_s)
        if status == 429 or status >= 500:
            retry_after = _retry_after_s(exc)
            return TransientActuationError(
                f"{what}: HTTP {status}: {message}", backoff_s if retry_after is None else retry_after
            )
        if status == 404:
            return NotFoundError(f"{what}: 404 not found: {message}")
        if status == 410:
            return GoneError(f"{what}: 410 gone: {message}", backoff_s)
        if status == 0:
            return TransientActuationError(f"{what}: no answer: {message}", backoff_s)
        return PermanentActuationError(f"{what}: HTTP {status}: {message}")
    return TransientActuationError(f"{what}: {type(exc).__name__}: {exc}", backoff_s)


def _api_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body[:200]
        if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
            return str(parsed["message"])[:200]
    return str(exc.reason or "")


def _retry_after_s(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class LabelKeys:
    """Node label keys for the topology. A level whose key is None (or absent on a node) is "default"."""

    vdc: str | None = f"{PREFIX}/vdc"
    physical_cluster: str | None = f"{PREFIX}/physical-cluster"
    logical_cluster: str | None = f"{PREFIX}/logical-cluster"
    s2: str | None = f"{PREFIX}/s2"
    s1: str | None = f"{PREFIX}/s1"
    s0: str | None = f"{PREFIX}/s0"
    sku: str = f"{PREFIX}/gpu-sku"
    gpu_resource: str = "nvidia.com/gpu"

    def level_keys(self) -> tuple[tuple[Level, str | None], ...]:
        return (
            (Level.VDC, self.vdc),
            (Level.PHYSICAL_CLUSTER, self.physical_cluster),
            (Level.LOGICAL_CLUSTER, self.logical_cluster),
            (Level.S2, self.s2),
            (Level.S1, self.s1),
            (Level.S0, self.s0),
        )


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration (``spec.tolerations[]``); ``key`` None with ``Exists`` tolerates every taint."""

    key: str | None = None
    operator: str = "Equal"  # or "Exists"
    value: str | None = None
    effect: str | None = None  # None: every effect

    def tolerates(self, taint: Mapping[str, Any]) -> bool:
        """Kubernetes' matching rule for one taint (``{key, value, effect}``)."""
        if self.effect is not None and self.effect != taint.get("effect"):
            return False
        if self.key is None:
            return self.operator == "Exists"
        if self.key != taint.get("key"):
            return False
        return self.operator == "Exists" or (self.value or "") == (taint.get("value") or "")

    def manifest(self) -> dict[str, str]:
        out = {"operator": self.operator}
        for name, value in (("key", self.key), ("value", self.value), ("effect", self.effect)):
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    namespace: str = "default"
    labels: LabelKeys = field(default_factory=LabelKeys)
    request_timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 0.2  # first conflict / error backoff, doubled per attempt
    max_backoff_s: float = 5.0
    retry_budget_s: float = 8.0  # one call with its retries never waits longer than this
    field_manager: str = "heteroscale"
    # "namespace": the GPUs our own pods use; "cluster": every pod on the GPU nodes (needs cluster-wide
    # pod list permission: deploy/kustomize/components/gpu-accounting)
    gpu_accounting: str = "namespace"
    start_timeout_s: float = 900.0  # a pod not Ready for this long is stuck: replaced, not capacity
    unschedulable_grace_s: float = 60.0  # a pod the scheduler finds no node for this long is stuck
    list_page_size: int = 500  # objects per page of a list
    tolerations: tuple[Toleration, ...] = ()  # on every pod we create; taints they tolerate keep a node usable

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be ≥ 1")
        if self.request_timeout_s <= 0 or self.retry_budget_s <= 0:
            raise ValueError("request_timeout_s and retry_budget_s must be > 0")
        if self.gpu_accounting not in ("cluster", "namespace"):
            raise ValueError("gpu_accounting must be 'cluster' or 'namespace'")
        if self.start_timeout_s <= 0 or self.unschedulable_grace_s < 0:
            raise ValueError("start_timeout_s must be > 0 and unschedulable_grace_s ≥ 0")
        if self.list_page_size < 1:
            raise ValueError("list_page_size must be ≥ 1")


def new_api_client(kubeconfig: Path | None = None, context: str | None = None, in_cluster: bool = False) -> Any:
    """An ApiClient from a kubeconfig file (or the default one) or from the in-cluster service account."""
    try:
        if in_cluster:
            configuration = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            configuration.retries = False
            return kubernetes.client.ApiClient(configuration)
        api = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=None if kubeconfig is None else str(kubeconfig), context=context
        )
        api.configuration.retries = False
        api.rest_client = kubernetes.client.rest.RESTClientObject(api.configuration)
        return api
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '(default)'}"
        raise PermanentActuationError(f"cannot configure the Kubernetes client from the {where}: {exc}") from exc


Fence = Callable[[str], None]
"""Called with a write's description before it is sent; raises :class:`FencedError` to refuse it."""


class KubeApi:
    """The official client's typed APIs, one ``call`` with translation and bounded retries, and the fence."""

    def __init__(self, api_client: Any, settings: KubernetesSettings, clock: Clock | None = None) -> None:
        self.api = api_client
        self.settings = settings
        self.clock: Clock = clock if clock is not None else WallClock()
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.fence: Fence | None = None
        self.calls = 0  # API calls made (for tests and figures)
        self.writes = 0  # writes sent (each attempt counts)

    def call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        retry_conflicts: bool = False,
        write: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``fn(*args, **kwargs)`` as parsed JSON, retrying transient failures (and 409 if asked)."""
        deadline_s = self.clock.now_s() + self.settings.retry_budget_s
        backoff_s = self.settings.backoff_s
        last: TransientActuationError | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            if write and self.fence is not None:
                self.fence(what)  # before every attempt: a retry may come after the lease lapsed
            try:
                self.calls += 1
                self.writes += 1 if write else 0
                response = fn(*args, _preload_content=False, _request_timeout=self.settings.request_timeout_s, **kwargs)
                return parse_json(response, what)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                error = translate(exc, what, backoff_s)
                if isinstance(error, PermanentActuationError):
                    raise error from exc
                if isinstance(error, GoneError) or (isinstance(error, ConflictError) and not retry_conflicts):
                    raise error from exc  # the caller decides: list again, or re-read and retry
                last = error
                wait_s = min(error.retry_after_s, self.settings.max_backoff_s * 6)
                left_s = deadline_s - self.clock.now_s()
                if attempt == self.settings.max_attempts or wait_s >= left_s:
                    raise TransientActuationError(
                        f"{error} (gave up after {attempt} attempt(s))", error.retry_after_s
                    ) from exc
                log.info("%s: attempt %d failed (%s); retrying in %.2f s", what, attempt, error, wait_s)
                self.clock.sleep_s(wait_s)
                backoff_s = min(backoff_s * 2, self.settings.max_backoff_s)
        raise last or TransientActuationError(f"{what}: no attempt made")  # max_attempts ≥ 1: unreachable

    def list_all(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        keep: Callable[[dict[str, Any]], T | None],
        **kwargs: Any,
    ) -> list[T]:
        """Every object ``fn`` lists, page by page (see the module doc), as ``keep(object)`` where not None."""
        page_size = self.settings.list_page_size
        for restart in range(LIST_RESTARTS + 1):
            out: list[T] = []
            token: str | None = None
            try:
                for page in range(1, MAX_PAGES + 1):
                    answer = self.call(f"{what} (page {page})", fn, *args, limit=page_size, _continue=token, **kwargs)
                    for item in answer.get("items") or []:
                        kept = keep(item)
                        if kept is not None:
                            out.append(kept)
                    token = (answer.get("metadata") or {}).get("continue") or None
                    if token is None:
                        return out
            except GoneError:
                if restart == LIST_RESTARTS:
                    raise
                log.info("%s: the list's continue token expired; listing again", what)
                continue
            raise TransientActuationError(
                f"{what}: more than {MAX_PAGES} pages of {page_size}", self.settings.backoff_s
            )
        raise TransientActuationError(f"{what}: no list made")  # LIST_RESTARTS ≥ 0: unreachable


def parse_json(response: Any, what: str) -> Any:
    data = getattr(response, "data", response)
    try:
        return json.loads(data)
    except (TypeError, ValueError) as exc:
        raise TransientActuationError(f"{what}: malformed answer from the API server") from exc


def error_kind(exc: Exception) -> str:
    return "permanent" if isinstance(exc, PermanentActuationError) else "transient"
