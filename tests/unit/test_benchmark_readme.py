"""README.md's benchmark figures come from the recorded outputs (results/benchmarks/), never typed.

The committed README must be exactly what the committed records render; the renderer is checked on
small fixtures (blocks filled, the summary-line rule, the tables, one clear error line for a missing
marker, end marker or record); the recorder on tiny scripts (a failing one is recorded with its exit
status and standard error, and the others still run). No benchmark runs here.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from heteroscale.errors import BenchmarkRecordError
from heteroscale.reports.benchmark_readme import (
    WHOLE_MAX_LINES,
    parse_record,
    read_records,
    render_readme,
    summary_lines,
)

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "results" / "benchmarks"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def header(script: str = "benchmarks/x.py", exit_status: str = "0") -> str:
    return (
        f"#record script={script} date=2026-01-02T03:04:05Z machine=x86_64 cpus=2 load_avg=1.50 "
        f"python=3.11.7 wall_s=2.5 exit={exit_status}"
    )


def records_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "records"
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.txt").write_text(text, encoding="utf-8")
    return d


# --- the committed README -------------------------------------------------------------------------


def test_the_readme_benchmark_blocks_are_what_the_committed_records_render() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    records = read_records(RECORDS, "results/benchmarks")
    recorder = _script("record")
    assert set(recorder.SCRIPTS) <= set(records), "a script of `make bench` has no committed record"
    assert render_readme(text, records, "README.md", "results/benchmarks") == text, (
        "README.md's benchmark blocks are stale: run `python benchmarks/readme.py`"
    )


def test_the_policy_targets_record_is_what_the_script_prints_from_the_committed_results() -> None:
    """It only reads results/bench.json, so its record must follow a new policy benchmark."""
    done = subprocess.run(
        [sys.executable, "benchmarks/policy_targets.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    recorded = parse_record("policy_targets", (RECORDS / "policy_targets.txt").read_text(), "policy_targets.txt")
    assert done.stdout.splitlines() == list(recorded.lines), (
        "re-record it: python benchmarks/record.py --readme policy_targets"
    )


def test_no_typed_figure_is_left_in_the_benchmark_table() -> None:
    """The table's measured column points to the generated blocks; it holds no figure of its own."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Benchmarks (`make bench`)", 1)[1].split("### Recorded figures", 1)[0]
    rows = [ln for ln in table.splitlines() if ln.startswith("| `benchmarks/")]
    assert len(rows) >= len(_script("record").SCRIPTS)
    for row in rows:
        measured = row.rstrip(" |").rsplit(" | ", 1)[1]
        assert "](#" in measured, row
        assert not re.search(r"\d", re.sub(r"\]\(#[^)]*\)", "]", measured)), row


# --- the renderer on fixtures ---------------------------------------------------------------------


def test_a_block_is_filled_with_the_output_under_where_it_was_recorded(tmp_path: Path) -> None:
    d = records_dir(tmp_path, {"speed": header("benchmarks/speed.py", "1") + "\nrps=10\ntarget rps>=20: MISSED\n"})
    readme = "# T\n\nbefore\n<!-- benchmark:speed -->\nold typed 99\n<!-- /benchmark:speed -->\nafter\n"
    out = render_readme(readme, read_records(d, "recs"), "README.md", "recs")
    assert out.startswith("# T\n\nbefore\n<!-- benchmark:speed -->\n") and out.endswith(
        "<!-- /benchmark:speed -->\nafter\n"
    )
    assert "old typed 99" not in out
    assert "`python benchmarks/speed.py`, recorded 2026-01-02 03:04:05 UTC on x86_64 (2 CPUs, load average 1.50" in out
    assert "exit status 1 ([record](recs/speed.txt))" in out
    assert "```text\nrps=10\ntarget rps>=20: MISSED\n```" in out
    assert render_readme(out, read_records(d, "recs"), "README.md", "recs") == out  # idempotent


def test_a_failed_script_shows_its_standard_error(tmp_path: Path) -> None:
    text = header(exit_status="1") + "\n#record stderr, last 2 lines:\n#record | Traceback\n#record | ValueError: x\n"
    d = records_dir(tmp_path, {"x": text})
    out = render_readme("<!-- benchmark:x -->\n<!-- /benchmark:x -->\n", read_records(d, "r"), "README.md", "r")
    assert "The last lines of its standard error:" in out and "ValueError: x" in out


def test_a_record_without_its_block_names_the_missing_marker(tmp_path: Path) -> None:
    d = records_dir(tmp_path, {"a": header() + "\nx=1\n", "b": header() + "\ny=2\n"})
    readme = "<!-- benchmark:a -->\n<!-- /benchmark:a -->\n"
    with pytest.raises(BenchmarkRecordError) as err:
        render_readme(readme, read_records(d, "recs"), "README.md", "recs")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("README.md: no block <!-- benchmark:b -->") and "recs/b.txt" in message


def test_a_block_without_its_record_names_the_missing_file(tmp_path: Path) -> None:
    d = records_dir(tmp_path, {"a": header() + "\nx=1\n"})
    readme = "<!-- benchmark:a -->\n<!-- /benchmark:a -->\n<!-- benchmark:gone -->\n<!-- /benchmark:gone -->\n"
    with pytest.raises(BenchmarkRecordError, match=r"^recs/gone\.txt: no such record, .*record\.py gone"):
        render_readme(readme, read_records(d, "recs"), "README.md", "recs")


@pytest.mark.parametrize(
    ("readme", "expected"),
    [
        ("<!-- benchmark:a -->\nno end\n", r"^README\.md: block <!-- benchmark:a --> has no end marker"),
        ("<!-- /benchmark:a -->\n<!-- benchmark:a -->\n", r"has no end marker <!-- /benchmark:a --> after it"),
        ("<!-- benchmark:a -->\n<!-- /benchmark:a -->\n" * 2, r"appears twice"),
        ("<!-- benchmark:a -->\n<!-- /benchmark:a -->\n<!-- /benchmark:z -->\n", r"/benchmark:z --> has no begin"),
        ("<!-- benchmark:a -->\n<!-- /benchmark:a -->\n<!-- benchmark:a:pie -->\n<!-- /benchmark:a:pie -->\n",
         r"benchmark:a:pie: no such view"),
    ],
)  # fmt: skip
def test_malformed_markers_are_one_clear_line(tmp_path: Path, readme: str, expected: str) -> None:
    d = records_dir(tmp_path, {"a": header() + "\nx=1\n"})
    with pytest.raises(BenchmarkRecordError, match=expected) as err:
        render_readme(readme, read_records(d, "recs"), "README.md", "recs")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=1\n", r"^recs/bad\.txt: line 1 is not a record header"),
        ("#record script=s date=d\nx=1\n", r"^recs/bad\.txt: line 1: the record header lacks machine, cpus"),
    ],
)
def test_a_malformed_record_names_its_file(tmp_path: Path, text: str, expected: str) -> None:
    d = records_dir(tmp_path, {"bad": text})
    with pytest.raises(BenchmarkRecordError, match=expected):
        read_records(d, "recs")


def test_a_missing_records_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkRecordError, match=r"^nowhere: no such directory"):
        read_records(tmp_path / "nowhere", "nowhere")


def test_a_long_output_is_shown_by_its_target_lines_only() -> None:
    detail = [f"  row {i} median=0.{i:02d} target: information" for i in range(WHOLE_MAX_LINES)]
    lines = ["report: per regime (target: median <= 10 %)", "held out:", *detail, "# note", "target: a met, b MISSED"]
    shown, whole = summary_lines(lines)
    assert not whole
    assert shown == ["report: per regime (target: median <= 10 %)", "target: a met, b MISSED"]
    short = ["a=1", "  b=2"]
    assert summary_lines(short) == (short, True)
    no_verdict = [f"k{i}={i}" for i in range(WHOLE_MAX_LINES + 5)]
    assert summary_lines(no_verdict) == (no_verdict, True)


SCORECARD = """scorecard source=splitwise engine=measured-2023 n=1660 median=0.0597 p90=0.2514 strict_median=0.1612 \
strict_p90=0.5306 target=MISSED (p90 25.1 % > 25.0 %)
scorecard source=aiconfigurator engine=current n=39 median=0.1495 p90=0.3568 target=outside the target
"""
SPLITWISE = """case  run                    SLO    TTFT p50 / p90 / p99 (s)  TBT p50 / p90 / p99 (ms)  E2E p50 / p99 (s)
A'
  SplitwiseSim             NO   0.128 / 0.484 / 1.299   45.8 / 83.0 / 154.4  7.70 / 39.91
  ours, mixed pool         NO   0.089 / 0.261 / 0.513   71.6 / 91.4 / 130.6  9.96 / 47.30
  speed: requests=8819 wall_s=0.117 requests_per_wall_s=75,376 target>=24,000: met
  ours, pure P/D          yes   0.091 / 0.320 / 0.837   66.9 / 74.0 / 83.4   8.71 / 41.88   (verdict differs)
startup+setup A: 0.69 s target<=1 s: met
"""
PERF = """measured_median_rel_err=0.0384 measured_max_rel_err=0.5521 n=1240
aiconfigurator_median_rel_err=0.1508 aiconfigurator_max_rel_err=0.7193 n=40
info aiconfigurator_fitted_2023_engine_median_rel_err=0.6274 aiconfigurator_fitted_2023_engine_max_rel_err=3.0975
targets measured_median<=0.15 aiconfigurator_median<=0.25: PASS
"""


def _render_view(tmp_path: Path, name: str, body: str) -> str:
    d = records_dir(tmp_path, {name: header(f"benchmarks/{name}.py") + "\n" + body})
    readme = f"<!-- benchmark:{name} -->\n<!-- /benchmark:{name} -->\n"
    readme += f"<!-- benchmark:{name}:table -->\n<!-- /benchmark:{name}:table -->\n"
    return render_readme(readme, read_records(d, "r"), "README.md", "r")


def test_the_scorecard_table_carries_the_scripts_verdicts(tmp_path: Path) -> None:
    out = _render_view(tmp_path, "calibration_scorecard", SCORECARD)
    assert (
        "| Splitwise (`measured-2023`) | 1,660 | 6.0 % | 25.1 % | MISSED (p90 25.1 % > 25.0 %) | 16.1 % / 53.1 % |"
        in out
    )
    assert "| AIConfigurator estimates (`current`) | 39 | 15.0 % | 35.7 % | outside the target | — |" in out


def test_the_splitwise_table_marks_where_our_verdict_differs(tmp_path: Path) -> None:
    out = _render_view(tmp_path, "splitwise_mirror", SPLITWISE)
    row = "| A′: conv 1P+1D | fail, 1.299 s / 154.4 ms | "
    row += "fail, 0.513 s / 130.6 ms | **pass** (differs), 0.837 s / 83.4 ms |"
    assert row in out


def test_the_perf_model_table_and_its_verdict(tmp_path: Path) -> None:
    out = _render_view(tmp_path, "perf_model_fidelity", PERF)
    assert "| measured, fitted (1,240) | 3.8 % | 55 % | ≤ 15 % |" in out
    assert "| AIConfigurator, current-engine overheads (40) | 15.1 % | 72 % | ≤ 25 % |" in out
    assert "Verdict: `targets measured_median<=0.15 aiconfigurator_median<=0.25: PASS`" in out


def test_a_view_whose_lines_are_missing_says_which(tmp_path: Path) -> None:
    """A crashed scorecard leaves no figure lines: the table is refused, not left stale."""
    with pytest.raises(BenchmarkRecordError, match=r"^r/calibration_scorecard\.txt: no 'scorecard source=…' line"):
        _render_view(tmp_path, "calibration_scorecard", "Traceback (most recent call last):\n")


# --- the recorder and the command -----------------------------------------------------------------


def test_the_recorder_keeps_going_past_a_failing_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _script("record")
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bad.py").write_text("import sys\nprint('half')\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    (bench / "good.py").write_text("print('target x<=1: met')\n")
    monkeypatch.setattr(recorder, "ROOT", tmp_path)
    monkeypatch.setattr(recorder, "SCRIPTS", ("bad", "good"))
    out = tmp_path / "records"
    assert recorder.main(["--out", str(out)]) == 1
    bad = parse_record("bad", (out / "bad.txt").read_text(), "bad.txt")
    good = parse_record("good", (out / "good.txt").read_text(), "good.txt")
    assert bad.header["exit"] == "3" and bad.lines == ("half",) and bad.stderr_tail == ("boom",)
    assert bad.header["script"] == "benchmarks/bad.py" and bad.header["cpus"].isdigit()
    assert good.header["exit"] == "0" and good.lines == ("target x<=1: met",) and good.stderr_tail == ()
    assert recorder.main(["--out", str(out), "nope"]) == 2


def test_the_recorder_stops_a_script_past_its_time_out(tmp_path: Path) -> None:
    recorder = _script("record")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    assert recorder.record("slow", tmp_path / "out", 3.0, root=tmp_path) == "timeout"
    slow = parse_record("slow", (tmp_path / "out" / "slow.txt").read_text(), "slow.txt")
    # what it printed before the time-out is kept (on a loaded machine it may not have started yet)
    assert slow.header["exit"] == "timeout" and slow.lines in {(), ("started",)}


def test_the_command_checks_and_reports_errors_in_one_line(tmp_path: Path) -> None:
    d = records_dir(tmp_path, {"a": header() + "\nx=1\n"})
    readme = tmp_path / "README.md"
    readme.write_text("<!-- benchmark:a -->\n<!-- /benchmark:a -->\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "benchmarks/readme.py", "--readme", str(readme), "--records", str(d), *args]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    assert run("--check").returncode == 1
    assert run().returncode == 0 and "x=1" in readme.read_text()
    assert run("--check").returncode == 0
    readme.write_text("<!-- benchmark:a -->\n")
    broken = run()
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1 and "has no end marker" in broken.stderr
