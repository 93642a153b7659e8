"""No utilisation above 100 %, ever, at either fidelity: whatever launches, removals (drained or
killed, with or without grace), discovery changes and waits happen, no instance or role reports more
busy time than it was alive (a property over generated histories)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heteroscale.config.catalog import calibration_for
from heteroscale.domain.hardware import Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.sim.runner import SimulationRun
from heteroscale.sim.scenario import Fidelity
from tests.support import builders as b

SC = b.scenario(prefill=2, decode=2, cold_start_s=20.0, telemetry_window_s=10.0)
CAL = calibration_for(SC)
TRACE = b.trace(n=1_500, rate_rps=10.0, input_tokens=[300, 3000, 1200] * 500, output_tokens=[20, 400, 150] * 500)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(1.0, 40.0)),
        st.tuples(st.just("launch"), st.sampled_from(list(Role))),
        st.tuples(
            st.just("remove"), st.integers(0, 9), st.sampled_from(list(ScaleInMode)), st.sampled_from([0.0, 5.0])
        ),
        st.tuples(st.just("discovery"), st.integers(0, 9), st.booleans()),
    ),
    min_size=1,
    max_size=14,
)


def _apply(run: SimulationRun, op: tuple[Any, ...]) -> None:
    engine, cluster = run.engine, run.cluster
    live = sorted((i for i in cluster.instances.values() if i.lifecycle is not Lifecycle.GONE), key=lambda i: i.id)
    if op[0] == "advance":
        engine.run_until(engine.now_s + op[1])
    elif op[0] == "launch":
        node = next((n for n in cluster.node_order if cluster.node_free[n] >= 4), None)
        if node is not None:
            engine.launch(0, SC.services[0].spec.preferred_shape(op[1]), "dg0", node, engine.now_s, warm=False)
    elif live and op[0] == "remove":
        engine.remove(live[op[1] % len(live)].id, op[2], op[3], engine.now_s)
    elif live and op[0] == "discovery":
        engine.set_discovery(live[op[1] % len(live)].id, op[2])


@pytest.mark.parametrize("fidelity", list(Fidelity))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=ops)
def test_no_utilisation_above_one(fidelity: Fidelity, history: list[tuple[Any, ...]]) -> None:
    run = SimulationRun(SC, CAL, fidelity=fidelity, loads=b.loads_for(SC, TRACE))
    run._deploy_initial()
    for op in history:
        _apply(run, op)
    end_s = run.engine.now_s + 30.0
    run.engine.run_until(end_s)
    summary = run.summary(end_s)
    for role in ("prefill", "decode"):
        for key in ("avg_gpu_util_by_role", "avg_sm_activity_by_role"):
            value = summary[key][role]
            assert value is None or value <= 1.0 + 1e-9, (key, role, value)
    for inst in run.cluster.instances.values():
        until_s = inst.gone_at_s if inst.gone_at_s is not None else end_s
        kernel_s = inst.acc_kernel_s
        if getattr(inst, "busy", False) and getattr(inst, "batch_end", 0.0) > end_s:  # counted at batch start
            kernel_s -= (inst.batch_end - end_s) * inst.batch_kfrac  # type: ignore[attr-defined]
        ready_s = math.inf if inst.ready_at_s is None else inst.ready_at_s
        assert kernel_s <= max(0.0, until_s - ready_s) + 1e-6, (inst.id, kernel_s, inst.launched_at_s, until_s)
