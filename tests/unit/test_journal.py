"""The decision journal (controller/journal): intent before acting, outcome after, checkpoints,
rotation, start-up from the last checkpoint, old and damaged records, and what counts as an action."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from heteroscale.actuators.advisory import AdvisoryActuator
from heteroscale.controller.journal import (
    SCHEMA_VERSION,
    DurableJournal,
    Journal,
    JournalSettings,
    MemoryFold,
    decision_records,
    journal_files,
    open_journal,
    read_all,
    read_state,
)
from heteroscale.controller.live import restore_memory
from heteroscale.domain.hardware import Role
from heteroscale.errors import JournalUnwritable
from tests.support.controller_fakes import FakeCluster, FullDiskJournal, controller, cooldown_binding

REPO = Path(__file__).resolve().parents[2]
SETTINGS = JournalSettings(checkpoint_every=1000, window_s=600.0)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_cycles(journal: Any, cycles: int, *, dry_run: bool = False, wants: tuple[int, int] = (3, 3)) -> FakeCluster:
    """``cycles`` reconciles 30 s apart of a service that wants ``wants`` (1P/1D to start)."""
    cluster = FakeCluster()
    binding = cooldown_binding(lambda now_s: (1, 1) if now_s < 60.0 else wants, cooldown_s=0.0)
    acting: Any = AdvisoryActuator(cluster) if dry_run else cluster
    ctl = controller(binding, acting, journal)
    for k in range(1, cycles + 1):
        ctl.reconcile_once(30.0 * k)
    return cluster


# --- intent, outcome, ids ----------------------------------------------------------------------


def test_every_action_is_preceded_by_a_durable_intent_with_the_same_decision_id(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = open_journal(path, SETTINGS, now_s=0.0)
    cluster = run_cycles(journal, 4)
    journal.close()
    assert cluster.count(Role.DECODE) == 3
    got = lines(path)
    assert got[0]["phase"] == "checkpoint" and all(r["schema_version"] == SCHEMA_VERSION for r in got)
    seen_intents: set[str] = set()
    applied = 0
    for r in got[1:]:
        assert r["phase"] in ("intent", "outcome")
        if r["phase"] == "intent":
            assert "outcome" not in r and r["applied"] is False
            seen_intents.add(r["decision_id"])
        elif r["applied"]:
            applied += 1
            assert r["decision_id"] in seen_intents  # written (and fsynced) before the actuator ran
    assert applied == 2  # 0→1 and 1→3
    outcomes = [r for r in got if r["phase"] == "outcome"]
    assert [r["decision_id"] for r in outcomes] == [f"chat@{30.0 * k:.3f}#{k}" for k in range(1, 5)]
    nothing = [r for r in outcomes if not r["applied"]]
    assert nothing and all(r["outcome"] == {"applied": "nothing to do"} for r in nothing)


def test_the_simulators_in_memory_journal_keeps_one_record_per_decision() -> None:
    journal = Journal(keep=True)
    run_cycles(journal, 3)
    assert journal.count == 3 and len(journal.records) == 3
    assert [journal.new_id("chat", 1.0), journal.new_id("chat", 1.0)] == ["chat@1.000#4", "chat@1.000#5"]


# --- a journal that cannot be written -------------------------------------------------------


def test_an_intent_that_cannot_be_written_holds_and_nothing_is_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = FullDiskJournal(tmp_path / "journal.jsonl")
    cluster = FakeCluster()
    binding = cooldown_binding(lambda now_s: (2, 2))
    ctl = controller(binding, cluster, journal)
    journal.full = True
    with caplog.at_level(logging.WARNING):
        (held,) = ctl.reconcile_once(30.0)
    assert cluster.applies == 0 and cluster.instances == {}
    step = held.decision.steps[-1]
    assert step.name == "journal" and step.reason.value == "journal-unwritable" and "No space left" in step.detail
    assert (held.decision.desired_prefill, held.decision.desired_decode) == (0, 0)  # held at the current counts
    assert held.outcome["held"].startswith("journal-unwritable: journal: OSError")
    assert binding.memory.last_scale_out_s is None  # nothing happened: no cooldown from it
    assert not journal.writable and journal.errors == 2  # the intent, then the outcome
    assert "nothing applied: the intent cannot be journaled" in caplog.text
    journal.full = False  # room again: the next cycle acts at once
    (acted,) = ctl.reconcile_once(60.0)
    assert cluster.applies == 1 and cluster.count(Role.DECODE) == 2 and journal.writable
    assert acted.outcome["launched"]
    journal.close()


def test_a_write_cut_by_the_file_size_limit_leaves_no_torn_line(tmp_path: Path) -> None:
    """A real EFBIG (RLIMIT_FSIZE in a child process): the partial line is taken back out."""
    path = tmp_path / "journal.jsonl"
    journal, _ = open_journal(path, SETTINGS, now_s=0.0)
    run_cycles(journal, 2)
    journal.close()
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        from heteroscale.controller.journal import open_journal, JournalSettings
        from heteroscale.errors import JournalUnwritable
        from tests.support.controller_fakes import FakeCluster, controller, cooldown_binding
        path = Path({str(path)!r})
        limit = path.stat().st_size + 100  # room for a part of one line only
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            journal, _ = open_journal(path, JournalSettings(), now_s=100.0)
        except JournalUnwritable:
            sys.exit(3)
        ctl = controller(cooldown_binding(lambda now_s: (5, 5)), FakeCluster(), journal)
        (record,) = ctl.reconcile_once(120.0)
        print(record.decision.steps[-1].reason.value, journal.errors, journal.writable)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["journal-unwritable", "3", "False"]  # checkpoint, intent, outcome
    assert path.read_bytes() == before  # every partial line taken back: the file ends on a whole record


def test_a_torn_last_line_is_dropped_when_the_journal_opens(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = open_journal(path, SETTINGS, now_s=0.0)
    run_cycles(journal, 2)
    journal.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"schema_version": 2, "phase": "outc')
    journal, state = open_journal(path, SETTINGS, now_s=90.0)
    journal.close()
    assert journal.repaired_bytes == len(b'{"schema_version": 2, "phase": "outc')
    assert path.read_bytes().startswith(whole) and path.read_bytes().endswith(b"\n")
    assert state.skipped == 0  # a torn tail is not a damaged record


# --- what counts as an action ------------------------------------------------------------------


def dry_run_v1(at_s: float) -> dict[str, Any]:
    """A schema-1 record as ``--dry-run`` wrote it: a scale-out planned, nothing applied."""
    return {
        "at_s": at_s,
        "service": "chat",
        "observation": {},
        "recommendation": {"service": "chat", "prefill": 3, "decode": 3, "reason": "proportional", "detail": ""},
        "decision": {
            "service": "chat",
            "current_prefill": 1,
            "current_decode": 1,
            "desired_prefill": 2,
            "desired_decode": 2,
            "steps": [],
        },
        "plan": {
            "launches": [{"service": "chat"}, {"service": "chat"}],
            "removals": [],
            "unplaced": [],
            "discovery": [],
        },
        "outcome": {
            "launched": [],
            "removed": [],
            "discovery_changed": [],
            "errors": ["dry run: plan recorded, nothing applied (would launch 2, remove 0)"],
        },
        "pd_ratio": 1.0,
    }


def test_a_dry_runs_plans_stamp_no_cooldown_on_restart() -> None:
    """The defect: an acting controller started on a dry run's journal stayed in a scale-out cooldown."""
    records = [dry_run_v1(1000.0), dry_run_v1(1030.0)]
    memory = restore_memory(records, "chat", now_s=1060.0, window_s=600.0)
    assert memory.last_scale_out_s is None and memory.last_direction == 0
    acted = {**dry_run_v1(1090.0), "outcome": {"launched": ["a", "b"], "removed": [], "discovery_changed": []}}
    memory = restore_memory([*records, acted], "chat", now_s=1100.0, window_s=600.0)
    assert memory.last_scale_out_s == 1090.0  # an applied scale-out still counts


def test_a_dry_run_journal_written_by_the_controller_blocks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = open_journal(path, SETTINGS, now_s=0.0)
    run_cycles(journal, 4, dry_run=True)
    journal.close()
    outcomes = [r for r in lines(path) if r["phase"] == "outcome"]
    assert any(r["decision"]["desired_decode"] > r["decision"]["current_decode"] for r in outcomes)
    assert not any(r["applied"] for r in outcomes)
    state = read_state(path, 600.0)
    assert state.fold.memory("chat", 150.0).last_scale_out_s is None
    # the same decisions, acted on, do stamp the cooldown
    acting = tmp_path / "acting.jsonl"
    journal, _ = open_journal(acting, SETTINGS, now_s=0.0)
    run_cycles(journal, 4)
    journal.close()
    assert read_state(acting, 600.0).fold.memory("chat", 150.0).last_scale_out_s == 60.0


def test_an_intent_left_without_its_outcome_counts_as_an_action(tmp_path: Path) -> None:
    """Stopped between acting and recording: it may have acted, so the cooldown errs safe."""
    path = tmp_path / "journal.jsonl"
    journal, _ = open_journal(path, SETTINGS, now_s=0.0)
    run_cycles(journal, 2)
    journal.close()
    got = lines(path)
    cut = max(i for i, r in enumerate(got) if r["phase"] == "intent")
    path.write_text("".join(json.dumps(r) + "\n" for r in got[: cut + 1]), encoding="utf-8")
    assert read_state(path, 600.0).fold.memory("chat", 90.0).last_scale_out_s == 60.0


# --- start-up from the last checkpoint, rotation -------------------------------------------------


def test_start_up_reads_from_the_last_checkpoint_and_remembers_the_same(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    settings = JournalSettings(checkpoint_every=20, window_s=600.0)
    journal, _ = open_journal(path, settings, now_s=0.0)
    cluster = FakeCluster()
    wants = iter([(1, 1), (4, 4), (2, 2), (6, 6), (3, 3)] * 40)
    binding = cooldown_binding(lambda now_s: next(wants), cooldown_s=100.0)
    ctl = controller(binding, cluster, journal)
    for k in range(1, 201):
        ctl.reconcile_once(30.0 * k)
    journal.close()
    now_s = 30.0 * 201
    state = read_state(path, 600.0)
    assert state.checkpoint is not None and state.records_read <= 20 + 2 * 10
    assert state.bytes_read < path.stat().st_size / 5
    everything = restore_memory(list(read_all(path)), "chat", now_s, 600.0)
    assert state.fold.memory("chat", now_s) == everything
    assert everything.last_scale_out_s is not None and everything.last_scale_in_s is not None


def test_rotation_by_size_keeps_n_files_each_opening_with_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    settings = JournalSettings(max_bytes=16 * 1024, keep_files=2, checkpoint_every=1000, window_s=600.0)
    journal, _ = open_journal(path, settings, now_s=0.0)
    wants = iter([(1, 1), (3, 3), (2, 2)] * 200)
    ctl = controller(cooldown_binding(lambda now_s: next(wants), cooldown_s=45.0), FakeCluster(), journal)
    for k in range(1, 301):
        ctl.reconcile_once(30.0 * k)
    journal.close()
    files = journal_files(path)
    assert [f.name for f in files] == ["journal.jsonl.2", "journal.jsonl.1", "journal.jsonl"]
    assert journal.rotations > 2 and all(f.stat().st_size < 2 * 16 * 1024 for f in files)
    for f in files:
        assert lines(f)[0]["phase"] == "checkpoint"
    now_s = 30.0 * 301
    assert read_state(path, 600.0).fold.memory("chat", now_s) == journal.fold.memory("chat", now_s)


# --- old and damaged records ---------------------------------------------------------------------


def test_a_schema_1_journal_is_read(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    acted = {**dry_run_v1(1000.0), "outcome": {"launched": ["x"], "removed": [], "discovery_changed": []}}
    acted["pd_ratio"] = 1.25
    planned = {**dry_run_v1(1030.0), "pd_ratio": 1.5}  # the ratio is the last decision's, acted on or not
    path.write_text(json.dumps(acted) + "\n" + json.dumps(planned) + "\n", encoding="utf-8")
    memory = read_state(path, 600.0).fold.memory("chat", 1060.0)
    assert memory.last_scale_out_s == 1000.0 and memory.value("ratio.current") == 1.5
    assert [r["at_s"] for r in decision_records(read_all(path))] == [1000.0, 1030.0]


def test_damaged_records_are_skipped_with_a_warning_never_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {**dry_run_v1(1000.0), "outcome": {"launched": ["x"], "removed": [], "discovery_changed": []}}
    null_at = {**good, "at_s": None}
    null_decision = {**good, "decision": None}
    wrong_type = {**good, "decision": {**good["decision"], "current_prefill": "1"}}
    bad_phase = {**good, "schema_version": 2, "phase": "maybe"}
    damaged = [
        b"\xff\xfe not utf-8 \xc3\x28\n",
        json.dumps(null_at).encode() + b"\n",
        json.dumps(null_decision).encode() + b"\n",
        json.dumps(wrong_type).encode() + b"\n",
        json.dumps(bad_phase).encode() + b"\n",
        json.dumps({**good, "at_s": float("inf")}).encode() + b"\n",  # Python writes Infinity
        json.dumps({**good, "pd_ratio": float("nan")}).encode() + b"\n",
        b"[1, 2, 3]\n",
        b'"a string"\n',
        b"null\n",
        b'{"at_s": 5, "service": "chat", \n',
        b"\n",
    ]
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(damaged) + json.dumps(good).encode() + b"\n")
    with caplog.at_level(logging.WARNING):
        state = read_state(path, 600.0)
        memory = state.fold.memory("chat", 1010.0)
        everything = list(read_all(path))
    assert memory.last_scale_out_s == 1000.0  # the one good record counts
    assert state.skipped == len(damaged)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    assert len(warnings) >= 10 and any("more damaged records skipped" in r.getMessage() for r in warnings)
    assert sum("not UTF-8" in r.getMessage() for r in warnings) == 2  # once per read
    assert sum("Infinity is not a JSON number" in r.getMessage() for r in warnings) == 2
    assert len(everything) == 4  # the sound JSON objects (the fold then rejects three of them)


def test_a_checkpoint_folds_like_the_records_it_stands_for() -> None:
    records = [dry_run_v1(10.0), {**dry_run_v1(40.0), "outcome": {"launched": ["a"]}}]
    fold = MemoryFold(600.0)
    for r in records:
        fold.add(r)
    restored = MemoryFold(600.0)
    restored.add({"schema_version": 2, "phase": "checkpoint", "decision_id": None, "at_s": 50.0,
                  "services": fold.checkpoint()})  # fmt: skip
    assert restored.memory("chat", 60.0) == fold.memory("chat", 60.0)


def test_a_durable_journal_that_is_closed_refuses_to_write(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j.jsonl", SETTINGS, MemoryFold(600.0))
    journal.close()
    with pytest.raises(JournalUnwritable, match="is not open"):
        journal.checkpoint(1.0)


# --- records nothing reads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "to_file", "detailed"),
    [(False, False, False), (True, False, True), (False, True, True)],
)
def test_a_controller_skips_record_details_only_where_no_journal_reads_them(
    tmp_path: Path, keep: bool, to_file: bool, detailed: bool
) -> None:
    """A simulation's controller (plain_records off) converts observation and plan only for a journal
    that keeps or writes them; the journal file's lines carry them either way."""
    from heteroscale.controller.reconcile import Controller
    from tests.support.controller_fakes import FakeMetrics

    path = tmp_path / "journal.jsonl"
    journal = Journal(path if to_file else None, keep=keep)
    cluster = FakeCluster()
    binding = cooldown_binding(lambda now_s: (2, 2), cooldown_s=0.0)
    ctl = Controller([binding], FakeMetrics(), cluster, cluster, journal, tick_s=30.0, plain_records=False)  # type: ignore[arg-type]
    (record,) = ctl.reconcile_once(30.0)
    journal.close()
    assert cluster.writes, "the decision still acts"
    assert bool(record.observation) is detailed and bool(record.plan) is detailed
    if to_file:
        (outcome,) = [r for r in lines(path) if r.get("phase") == "outcome"]
        assert outcome["observation"] and outcome["plan"]["launches"]
