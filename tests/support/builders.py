"""Small builders for simulator tests: a catalog slice, a topology, a service, a scenario, a trace.

Each takes keyword overrides so a test states only what it is about.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from heteroscale.config.catalog import load_catalog
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.service import AffinityLevel, ServiceSpec, Slo
from heteroscale.domain.topology import NodeSpec, Topology
from heteroscale.sim.engine import ServiceLoad
from heteroscale.sim.scenario import (
    LoadKind,
    LoadSpec,
    PolicySpec,
    Scenario,
    ServiceRun,
    SimSettings,
)
from heteroscale.sim.traces import RequestTrace


def node(s2: str, s1: str, name: str, sku: str = "h100-sxm", gpus: int = 8) -> NodeSpec:
    return NodeSpec(path=("vdc", "pc", "lc", s2, s1, f"{s1}-s0", name), sku=sku, gpus_total=gpus, gpus_free=gpus)


def topology(nodes: list[NodeSpec] | None = None, **kv: Any) -> Topology:
    if nodes is None:
        nodes = [node("s2a", "s1a", f"n{i}") for i in range(4)] + [node("s2b", "s1b", f"m{i}") for i in range(4)]
    topo = Topology(name="test", nodes=tuple(nodes))
    if kv:
        topo = dataclasses.replace(topo, kv_bandwidth=dataclasses.replace(topo.kv_bandwidth, **kv))
    return topo


def service(**overrides: Any) -> ServiceSpec:
    base: dict[str, Any] = {
        "name": "svc",
        "model": "llama-3.1-70b",
        "prefill_shapes": (InstanceShape(Role.PREFILL, "h100-sxm", 4),),
        "decode_shapes": (InstanceShape(Role.DECODE, "h100-sxm", 4),),
        "pd_ratio": 1.0,
        "slo": Slo(ttft_s=2.0, tbt_s=0.1),
        "affinity": AffinityLevel.CLUSTER,
    }
    base.update(overrides)
    return ServiceSpec(**base)


def trace(
    n: int = 200,
    rate_rps: float = 2.0,
    input_tokens: int | list[int] = 1000,
    output_tokens: int | list[int] = 100,
    cached_tokens: list[int] | None = None,
    seed: int = 1,
) -> RequestTrace:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_rps, size=n))
    inp = (
        np.full(n, input_tokens, dtype=np.int64)
        if isinstance(input_tokens, int)
        else np.array(input_tokens, dtype=np.int64)
    )
    out = (
        np.full(n, output_tokens, dtype=np.int64)
        if isinstance(output_tokens, int)
        else np.array(output_tokens, dtype=np.int64)
    )
    cached = None if cached_tokens is None else np.array(cached_tokens, dtype=np.int64)
    return RequestTrace(name="synthetic", arrival_s=arrival, input_tokens=inp, output_tokens=out, cached_tokens=cached)


def scenario(
    spec: ServiceSpec | None = None,
    prefill: int = 2,
    decode: int = 2,
    topo: Topology | None = None,
    **settings: Any,
) -> Scenario:
    cat = load_catalog()
    spec = spec or service()
    run = ServiceRun(
        spec=spec,
        load=LoadSpec(kind=LoadKind.TRACE, trace_path="<in-memory>"),
        policy=PolicySpec(prefill=prefill, decode=decode),
    )
    return Scenario(
        name="test",
        description="test scenario",
        services=(run,),
        topology=topo or topology(),
        skus=dict(cat.skus),
        models=dict(cat.models),
        settings=SimSettings(**settings),
    )


def loads_for(sc: Scenario, tr: RequestTrace) -> list[ServiceLoad]:
    run = sc.services[0]
    return [
        ServiceLoad(
            run.spec,
            tr,
            ServiceLoad.resolve_cached(tr, run.spec.prefix_cache_hit_rate),
            sc.settings.cold_start_s,
        )
    ]
