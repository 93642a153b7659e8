"""Controller start-up on a large journal: time and peak memory of reading it back.

Builds, in a temporary directory, a 100 MB journal of realistic records — the DecisionRecords of a
simulated run of the embedded ``default`` scenario, replayed for three services with advancing times,
written as the live controller writes them (an intent before each action, every outcome, a checkpoint
every 100 records; one file, no rotation) — then, in a fresh process, does what ``heteroscale
controller`` does at start-up (``controller.journal.open_journal``: find the last checkpoint from the
end, fold the records after it, write a start-up checkpoint) and rebuilds each service's memory.

Prints the wall time and the peak RSS of that process (``resource.getrusage``), and the same for a
100 MB schema-1 journal (no checkpoints: the reader must stream it all) for information.

Target: a 100 MB journal starts in ≤ 2 s and ≤ 150 MB RSS (deploy/ limits the pod to 512 Mi).

    python benchmarks/journal_startup.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_BYTES = 100 * 1024 * 1024
TARGET_S = 2.0
TARGET_RSS_MB = 150.0
SERVICES = ("chat", "code", "batch")
TICK_S = 30.0


def sample_records() -> list[Any]:
    """DecisionRecords of one simulated half hour of ``default`` (real observations, steps and plans)."""
    from heteroscale.cli.wiring import with_overrides
    from heteroscale.config.catalog import calibration_for
    from heteroscale.config.loader import load_scenario
    from heteroscale.controller.journal import Journal
    from heteroscale.sim.runner import SimulationRun

    scenario = with_overrides(load_scenario("default"), duration_s=1800.0)
    run = SimulationRun(scenario, calibration_for(scenario))
    run.journal = Journal(keep=True)
    run.controller.journal = run.journal
    run.run()
    return run.journal.records


class UnsyncedJournal:
    """Builds the file fast: the live writer's lines, checkpoints and fold, without an fsync per line."""

    @staticmethod
    def open(path: Path) -> Any:
        from heteroscale.controller.journal import DurableJournal, JournalSettings, MemoryFold

        class _Unsynced(DurableJournal):
            def _sync(self) -> None:  # building the benchmark's input, not measuring it
                pass

        settings = JournalSettings(max_bytes=2 * TARGET_BYTES)
        return _Unsynced(path, settings, MemoryFold(settings.window_s))


def build_v2(path: Path, records: list[Any]) -> int:
    import dataclasses

    journal = UnsyncedJournal.open(path)
    k = 0
    while journal._size < TARGET_BYTES:
        template = records[k % len(records)]
        service = SERVICES[k % len(SERVICES)]
        at_s = 1_700_000_000.0 + TICK_S * (k // len(SERVICES))
        record = dataclasses.replace(template, at_s=at_s, service=service)
        decision_id = journal.new_id(service, at_s)
        acts = bool(record.plan.get("launches") or record.plan.get("removals") or record.plan.get("discovery"))
        if acts:
            journal.intend(record, decision_id)
        journal.conclude(record, decision_id, applied=acts)
        k += 1
    journal.close()
    return k


def build_v1(path: Path, records: list[Any]) -> int:
    from heteroscale.controller.journal.records import to_plain

    k, size = 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while size < TARGET_BYTES:
            line = to_plain(records[k % len(records)], finite=True)
            line["service"] = SERVICES[k % len(SERVICES)]
            line["at_s"] = 1_700_000_000.0 + TICK_S * (k // len(SERVICES))
            text = json.dumps(line, sort_keys=True) + "\n"
            fh.write(text)
            size += len(text.encode("utf-8"))
            k += 1
    return k


def start_up(path: str) -> None:
    """The child: the controller's start-up read, timed, with its peak RSS."""
    from heteroscale.clock import Stopwatch, WallClock
    from heteroscale.controller.journal import JournalSettings, open_journal

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    watch = Stopwatch()
    now_s = WallClock().now_s()
    journal, state = open_journal(Path(path), JournalSettings(max_bytes=2 * TARGET_BYTES), now_s)
    memories = {s: state.fold.memory(s, now_s) for s in SERVICES}
    journal.close()
    elapsed = watch.elapsed_s()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "start_s": elapsed,
                "peak_rss_mb": rss,
                "rss_before_read_mb": rss_before,
                "records_read": state.records_read,
                "bytes_read": state.bytes_read,
                "from_checkpoint": state.checkpoint is not None,
                "services": sorted(s for s, m in memories.items() if m.last_scale_out_s is not None),
            }
        )
    )


def measure(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--start-up", str(path)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--start-up":
        start_up(sys.argv[2])
        return 0
    records = sample_records()
    with tempfile.TemporaryDirectory(prefix="journal-startup-") as tmp:
        v2, v1 = Path(tmp) / "journal.jsonl", Path(tmp) / "legacy.jsonl"
        n2 = build_v2(v2, records)
        n1 = build_v1(v1, records)
        size2, size1 = v2.stat().st_size / 1e6, v1.stat().st_size / 1e6
        a, b = measure(v2), measure(v1)
    ok = a["start_s"] <= TARGET_S and a["peak_rss_mb"] <= TARGET_RSS_MB
    print(
        f"journal start-up: {size2:.0f} MB, {n2:,} decisions (schema 2, checkpoint every 100 records): "
        f"start_s={a['start_s']:.3f} peak_rss_mb={a['peak_rss_mb']:.0f} "
        f"(of which imports {a['rss_before_read_mb']:.0f}) read {a['records_read']} records, "
        f"{a['bytes_read'] / 1e3:.0f} kB from the last checkpoint; cooldowns restored for {a['services']}"
    )
    print(
        f"journal start-up: target start_s<={TARGET_S:g} and peak_rss_mb<={TARGET_RSS_MB:g}: "
        f"{'met' if ok else 'MISSED'}"
    )
    print(
        f"for information: {size1:.0f} MB schema-1 journal, {n1:,} records, no checkpoint (read in full): "
        f"start_s={b['start_s']:.3f} peak_rss_mb={b['peak_rss_mb']:.0f} read {b['records_read']:,} records"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
