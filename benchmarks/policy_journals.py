"""Journals of every policy, recorded and compared: proof that a refactor of policy/ changed nothing.

``record DIR`` writes, for every policy of the registry (and HeteroScale's predictive and adaptive-ratio
options):

* ``DIR/sim/<scenario>/<policy>.jsonl``: the DecisionRecord journal of a short simulation of each of
  a few embedded scenarios (analytic targets, so no pressure test; every service runs the policy);
* ``DIR/fuzz/<policy>.jsonl``: the PolicyResult of each of a few thousand seeded random contexts (bad
  observations, starting instances, two decode shapes, tight bounds), memory carried from call to call,
  so branches the simulations never reach are covered too.

``diff A B`` compares two such folders record for record and prints the first difference of each file;
it exits 1 if any file differs or is missing.

    PYTHONPATH=src python benchmarks/policy_journals.py record /tmp/journals-before
    PYTHONPATH=src python benchmarks/policy_journals.py diff /tmp/journals-before /tmp/journals-after
    PYTHONPATH=src python benchmarks/policy_journals.py diff A B --fields decision,recommendation,pd_ratio
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from heteroscale.config.catalog import calibration_for
from heteroscale.config.loader import load_scenario
from heteroscale.controller.journal import to_plain
from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.observation import Observation, RoleSignals
from heteroscale.domain.service import ServiceSpec, Slo
from heteroscale.policy.context import PolicyContext, PolicyMemory, RoleCounts, ServiceCounts, Targets
from heteroscale.policy.registry import POLICY_NAMES, make_policy
from heteroscale.sim.runner import SimulationRun

SCENARIOS: dict[str, float | None] = {"default": 2400.0, "long-prompt": 2400.0, "bursty": 1800.0, "small-mixed": None}
PERIODIC: dict[str, object] = {
    "entries": [{"weekdays": "mon-sun", "start": 600, "end": 1500, "prefill": 6, "decode": 5}],
    "default": {"prefill": 3, "decode": 3},
}
EXTRA: dict[str, tuple[str, dict[str, object]]] = {
    "heteroscale+predictive": ("heteroscale", {"predictive": {}}),
    "heteroscale+adaptive": ("heteroscale", {"adaptive_ratio": {}}),
    "hpa+drain": ("hpa", {"scale_in": "drain"}),
}
FUZZ_CALLS = 3000


def contenders() -> dict[str, tuple[str, dict[str, object]]]:
    """Every policy name with the options it needs to run, and a few option variants."""
    out: dict[str, tuple[str, dict[str, object]]] = {}
    for name in POLICY_NAMES:
        if name == "periodic":
            out[name] = (name, PERIODIC)
        elif name in ("static", "fixed"):
            out[name] = (name, {"prefill": 4, "decode": 4})
        else:
            out[name] = (name, {})
    return out | EXTRA


def file_name(label: str) -> str:
    return label.replace(":", "_").replace("+", "_") + ".jsonl"


def record_sim(out: Path) -> None:
    for scenario_name, duration_s in SCENARIOS.items():
        scenario = load_scenario(scenario_name)
        if duration_s is not None:
            scenario = dataclasses.replace(
                scenario, settings=dataclasses.replace(scenario.settings, duration_s=duration_s)
            )
        calibration = calibration_for(scenario)
        folder = out / "sim" / scenario_name
        for label, (name, options) in contenders().items():
            policies = {run.spec.name: (name, dict(options)) for run in scenario.services}
            run_dir = folder / "_run"
            sim = SimulationRun(scenario, calibration, policies=policies, out_dir=run_dir)
            sim.run()
            (run_dir / "journal.jsonl").replace(folder / file_name(label))
            print(f"sim {scenario_name} {label}: {sim.journal.count} records", flush=True)
        for left in (folder / "_run").iterdir():
            left.unlink()
        (folder / "_run").rmdir()


# --- fuzz -------------------------------------------------------------------------------------------

D1 = InstanceShape(Role.DECODE, "h100-sxm", 4)
D2 = InstanceShape(Role.DECODE, "h20", 8)
P1 = InstanceShape(Role.PREFILL, "h100-sxm", 4)


def _maybe(rng: random.Random, value: float, p_none: float = 0.08) -> float | None:
    return None if rng.random() < p_none else value


def _spec(rng: random.Random) -> ServiceSpec:
    two = rng.random() < 0.3
    lo_p, lo_d = rng.choice((0, 1, 2)), rng.choice((0, 1, 2))
    return ServiceSpec(
        name="svc",
        model="llama-3.1-70b",
        prefill_shapes=(P1,),
        decode_shapes=(D1, D2) if two else (D1,),
        pd_ratio=rng.choice((0.5, 1.0, 1.5, 3.0)),
        slo=Slo(ttft_s=2.0, tbt_s=0.1),
        min_prefill=lo_p,
        max_prefill=rng.choice((6, 30, 100)),
        min_decode=lo_d,
        max_decode=rng.choice((6, 30, 100)),
    )


def _targets() -> Targets:
    return Targets(
        decode_tps_per_instance=((D1.key, 1000.0), (D2.key, 500.0)),
        prefill_tps_per_instance=((P1.key, 10_000.0),),
        prefill_gpu_util=0.7,
        decode_gpu_util=0.8,
        prefill_sm_activity=0.6,
        decode_sm_activity=0.5,
        ttft_s=1.6,
        tbt_s=0.08,
        requests_per_s_per_prefill=5.0,
        requests_per_s_per_decode=2.0,
        mean_input_tokens=2000.0,
        mean_output_tokens=200.0,
        prefill_queue_per_instance=1.0,
        decode_batch_util=0.5,
        prefill_s_per_input_token=1e-4,
        decode_itl_floor_s=0.02,
        decode_itl_s_per_request=1e-4,
        decode_itl_s_per_kv_token=2e-7,
        decode_kv_capacity_tokens=5e5,
    )


def _counts(rng: random.Random, spec: ServiceSpec) -> ServiceCounts:
    p, d = rng.randint(0, 30), rng.randint(0, 30)
    ps, ds = rng.choice((0, 0, 0, 1, 3)), rng.choice((0, 0, 0, 1, 2))
    by_shape: tuple[tuple[str, int], ...] = ()
    if len(spec.decode_shapes) > 1 and d + ds > 0:
        h20 = rng.randint(0, d + ds)
        by_shape = ((D1.key, d + ds - h20), (D2.key, h20))
    return ServiceCounts(
        prefill=RoleCounts(ready=p, starting=ps, draining=rng.choice((0, 0, 1))),
        decode=RoleCounts(ready=d, starting=ds, by_shape=by_shape),
    )


def _observation(rng: random.Random, counts: ServiceCounts, now_s: float) -> Observation | None:
    if rng.random() < 0.04:
        return None
    load = rng.uniform(0.0, 2.0)
    p_ready, d_ready = counts.prefill.ready, counts.decode.ready
    return Observation(
        service="svc",
        window_start_s=now_s - 60.0,
        window_end_s=now_s,
        prefill=RoleSignals(
            p_ready,
            _maybe(rng, load * max(1, p_ready) * 10_000.0 * rng.uniform(0.6, 1.2), 0.04),
            gpu_util=_maybe(rng, min(1.0, load * rng.uniform(0.5, 0.9))),
            sm_activity=_maybe(rng, min(1.0, load * 0.5)),
            queue_len=_maybe(rng, rng.choice((0.0, rng.uniform(0, 40)))),
            running=_maybe(rng, rng.uniform(0, 8)),
            kv_usage=_maybe(rng, rng.uniform(0, 1)),
        ),
        decode=RoleSignals(
            d_ready,
            _maybe(rng, load * max(1, d_ready) * 1000.0 * rng.uniform(0.6, 1.2), 0.04),
            gpu_util=_maybe(rng, rng.uniform(0.8, 0.95)),
            sm_activity=_maybe(rng, rng.uniform(0.3, 0.65)),
            queue_len=_maybe(rng, rng.choice((0.0, rng.uniform(0, 40)))),
            running=_maybe(rng, rng.uniform(0, 200)),
            kv_usage=_maybe(rng, rng.uniform(0, 1)),
        ),
        ttft_p90_s=_maybe(rng, rng.uniform(0.1, 4.0) * load),
        tbt_p90_s=_maybe(rng, rng.uniform(0.02, 0.2) * load),
        requests_per_s=_maybe(rng, load * rng.uniform(5, 60)),
        mean_input_tokens=_maybe(rng, rng.uniform(500, 4000)),
        mean_output_tokens=_maybe(rng, rng.uniform(50, 500)),
        stale=rng.random() < 0.04,
    )


def record_fuzz(out: Path, calls: int = FUZZ_CALLS) -> None:
    folder = out / "fuzz"
    folder.mkdir(parents=True, exist_ok=True)
    for label, (name, options) in contenders().items():
        policy = make_policy(name, options)
        rng = random.Random(f"{label}-fuzz")
        memory = PolicyMemory()
        spec = _spec(rng)
        now_s = 0.0
        with (folder / file_name(label)).open("w", encoding="utf-8") as stream:
            for i in range(calls):
                if i % 200 == 0:  # a new service now and then, with fresh memory
                    spec, memory = _spec(rng), PolicyMemory()
                now_s += rng.choice((30.0, 30.0, 30.0, 15.0, 60.0, 240.0))
                counts = _counts(rng, spec)
                ctx = PolicyContext(
                    now_s=now_s,
                    spec=spec,
                    observation=_observation(rng, counts, now_s),
                    observation_error="fake source timed out" if rng.random() < 0.5 else None,
                    counts=counts,
                    targets=_targets(),
                    memory=memory,
                )
                try:
                    result = policy.decide(ctx)
                except ValueError as exc:  # part of the record: the same inputs must fail the same way
                    stream.write(json.dumps({"error": str(exc)}) + "\n")
                    continue
                memory = result.memory
                stream.write(json.dumps(to_plain(result), sort_keys=True) + "\n")
        print(f"fuzz {label}: {calls} calls", flush=True)


# --- compare ----------------------------------------------------------------------------------------


def _first_difference(a: list[str], b: list[str], fields: Sequence[str] = ()) -> str | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x == y:
            continue
        left, right = json.loads(x), json.loads(y)
        keys = sorted(k for k in set(left) | set(right) if left.get(k) != right.get(k))
        if fields:
            keys = [k for k in keys if k in fields]
        if keys:
            return f"record {i + 1}: fields {keys} differ"
    if len(a) != len(b):
        return f"{len(a)} records vs {len(b)}"
    return None


def diff(before: Path, after: Path, fields: Sequence[str] = (), only: str = "") -> int:
    """Compare every journal under ``before`` with its namesake under ``after``: every field, or only
    ``fields`` (e.g. the decisions, when the observation gained a signal); ``only``: file names that
    contain it."""
    files = sorted(p.relative_to(before) for p in before.rglob("*.jsonl") if only in p.name)
    changed = 0
    records = 0
    for rel in files:
        other = after / rel
        if not other.exists():
            print(f"MISSING {rel}")
            changed += 1
            continue
        a = (before / rel).read_text(encoding="utf-8").splitlines()
        b = other.read_text(encoding="utf-8").splitlines()
        records += len(a)
        why = _first_difference(a, b, fields)
        if why is not None:
            print(f"DIFFERS {rel}: {why}")
            changed += 1
    print(f"{len(files)} files, {records} records compared; {changed} differ")
    return 1 if changed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--only", choices=("sim", "fuzz"))
    cmp_ = sub.add_parser("diff")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    cmp_.add_argument("--fields", default="", help="comma-separated record fields to compare (default: all)")
    cmp_.add_argument("--only", default="", help="only files whose name contains this")
    args = parser.parse_args(argv)
    if args.command == "diff":
        fields = tuple(f for f in args.fields.split(",") if f)
        return diff(args.before, args.after, fields, args.only)
    if args.only in (None, "fuzz"):
        record_fuzz(args.out)
    if args.only in (None, "sim"):
        record_sim(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
