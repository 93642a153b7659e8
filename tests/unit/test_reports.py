"""Run reports: PNG plots of the per-window time series and the self-contained HTML comparison page."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from heteroscale.reports.html import write_html_report
from heteroscale.reports.plots import RunSeries, write_plots
from heteroscale.reports.table import compare_table, summary_table
from heteroscale.sim.telemetry import RoleWindow, WindowRow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_NAMES = ["load_and_instances.png", "utilisation.png", "latency.png"]


# -- builders -------------------------------------------------------------------------------------


def role_window(**overrides: Any) -> RoleWindow:
    base = RoleWindow(
        instances_ready=4,
        instances_starting=0,
        instances_draining=0,
        tps=20_000.0,
        gpu_util=0.6,
        sm_activity=0.4,
        compute_efficiency=0.3,
        queue_len=2.0,
        running=30.0,
        kv_usage=0.5,
    )
    return replace(base, **overrides)


def window_row(t_s: float, service: str = "chat", **overrides: Any) -> WindowRow:
    base = WindowRow(
        t_s=t_s,
        window_s=30.0,
        service=service,
        prefill=role_window(),
        decode=role_window(tps=5_000.0, gpu_util=0.9, sm_activity=0.62),
        arrivals_per_s=12.0,
        completions=360,
        ttft_p50_s=0.1,
        ttft_p90_s=0.3,
        ttft_p99_s=0.6,
        tbt_p50_s=0.014,
        tbt_p90_s=0.016,
        tbt_p99_s=0.02,
        mean_input_tokens=1000.0,
        mean_output_tokens=200.0,
    )
    return replace(base, **overrides)


def series(n: int = 12, service: str = "chat", scale_at: int = 6) -> list[dict[str, Any]]:
    """A run that scales decode out at window ``scale_at``, with gaps (None) in latency and utilisation."""
    rows = []
    for i in range(n):
        t_s = 30.0 * (i + 1)
        starting = 2 if i == scale_at else 0
        ready = 4 if i <= scale_at else 6
        rows.append(
            window_row(
                t_s,
                service,
                arrivals_per_s=10.0 + i,
                decode=role_window(
                    instances_ready=ready, instances_starting=starting, gpu_util=None if i == 3 else 0.8
                ),
                ttft_p90_s=None if i == 5 else 0.2 + 0.05 * i,
                tbt_p90_s=None if i == 5 else 0.015,
            ).flat()
        )
    return rows


def summary(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "gpu_hours": 39.4,
        "cost": 69.9,
        "slo_attainment": 0.995,
        "ttft_p50_s": 0.104,
        "ttft_p99_s": 0.644,
        "tbt_p50_s": 0.014,
        "tbt_p99_s": 0.0142,
        "avg_gpu_util": 0.613,
        "avg_gpu_util_by_role": {"prefill": 0.347, "decode": 0.879},
        "avg_sm_activity": 0.451,
        "scale_actions": 12,
        "latency_estimated": False,
        "services": {
            "chat": {
                "requests_total": 1000,
                "requests_completed": 990,
                "slo_attainment": 0.99,
                "ttft_p99_s": 0.6,
                "tbt_p99_s": 0.02,
                "slo": {"ttft_s": 1.0, "tbt_s": 0.05},
            }
        },
    }
    base.update(overrides)
    return base


class TableReader(HTMLParser):
    """Cell texts of each body row of the table with a given id; img sources; tags seen."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.in_table = False
        self.in_body = False
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.images: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "table":
            self.in_table = a.get("id") == self.table_id
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif self.in_table and tag == "tbody":
            self.in_body = True
        elif self.in_table and tag == "tr" and self.in_body:
            self.rows.append([])
        elif self.in_table and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.in_table = self.in_body = False
        elif self.in_table and tag in ("td", "th") and self.cell is not None:
            text = "".join(self.cell)
            (self.rows[-1] if self.in_body else self.headers).append(text)
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def read_table(html_text: str, table_id: str = "comparison") -> TableReader:
    reader = TableReader(table_id)
    reader.feed(html_text)
    return reader


# -- plots ----------------------------------------------------------------------------------------


def runs_two_policies() -> dict[str, RunSeries]:
    return {
        "fixed": RunSeries(label="fixed", rows=series(scale_at=99)),
        "heteroscale": RunSeries(label="HeteroScale", rows=series(scale_at=6)),
    }


@pytest.fixture(scope="module")
def plotted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The plots of two policies, written once for the tests that only read them."""
    return write_plots(tmp_path_factory.mktemp("plots") / "out", runs_two_policies(), slo={"chat": (1.0, 0.05)})


def test_write_plots_writes_the_three_pngs(plotted: list[Path]) -> None:
    assert [p.name for p in plotted] == PLOT_NAMES
    for p in plotted:
        assert p.parent.name == "out"
        data = p.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000, f"{p.name} looks empty"


def test_write_plots_is_deterministic(tmp_path: Path, plotted: list[Path]) -> None:
    again = write_plots(tmp_path, runs_two_policies(), slo={"chat": (1.0, 0.05)})
    for pa, pb in zip(plotted, again, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param({}, id="no runs"),
        pytest.param({"p": RunSeries(label="p", rows=[])}, id="empty series"),
        pytest.param(
            {"p": RunSeries(label="p", rows=[window_row(30.0, ttft_p90_s=None, tbt_p90_s=None).flat()])},
            id="one window, no latency",
        ),
        pytest.param(
            {"p": RunSeries(label="p", rows=[{"t_s": 30.0, "service": "chat"}, {"t_s": None}])},
            id="rows missing keys",
        ),
    ],
)
def test_write_plots_handles_empty_and_gappy_input(tmp_path: Path, runs: dict[str, RunSeries]) -> None:
    paths = write_plots(tmp_path, runs)
    assert [p.name for p in paths] == PLOT_NAMES
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)


def test_no_data_differs_from_data(tmp_path: Path, plotted: list[Path]) -> None:
    empty = write_plots(tmp_path, {"p": RunSeries(label="p", rows=[])})
    for pe, pf in zip(empty, plotted, strict=True):
        assert pe.read_bytes() != pf.read_bytes(), pe.name


def test_write_plots_draws_one_column_per_service(tmp_path: Path) -> None:
    one = write_plots(tmp_path / "one", {"p": RunSeries(label="p", rows=series(service="chat"))})
    rows = series(service="chat") + series(service="code")
    two = write_plots(tmp_path / "two", {"p": RunSeries(label="p", rows=rows)}, slo={"code": (2.0, 0.1)})
    for p1, p2 in zip(one, two, strict=True):
        assert png_width(p2) > png_width(p1), p1.name


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")


# -- HTML -----------------------------------------------------------------------------------------


def test_html_report_references_images_and_has_one_row_per_policy(plotted: list[Path]) -> None:
    out_dir = plotted[0].parent
    summaries = {"fixed": summary(), "<x>": summary(gpu_hours=20.5), "oracle": summary()}
    path = write_html_report(out_dir, "Compare & contrast", summaries, plotted, notes=["ratio 1:2 <fixed>"])
    assert path == out_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    table = read_table(text)
    assert [r[0] for r in table.rows] == ["fixed", "<x>", "oracle"]
    assert "&lt;x&gt;" in text and "<x>" not in text
    assert "&lt;fixed&gt;" in text and "Compare &amp; contrast" in text
    assert table.images == PLOT_NAMES
    assert {"script", "link", "iframe"}.isdisjoint(table.tags)
    assert not re.search(r"(src|href)=\"(https?:|//|/)", text)
    by_header = dict(zip(table.headers, table.rows[1], strict=True))
    assert by_header["GPU-hours"] == "20.5"
    assert by_header["SLO attainment"] == "99.5 %"
    assert by_header["TTFT p99"] == "644 ms"
    details = read_table(text, "details")
    assert [r[0] for r in details.rows] == ["fixed", "<x>", "oracle"]
    by_detail = dict(zip(details.headers, details.rows[1], strict=True))
    assert by_detail["TBT p50"] == "14.0 ms"
    assert by_detail["GPU util decode"] == "87.9 %"
    assert by_detail["scale actions"] == "12"


def test_html_report_shows_none_and_missing_as_a_dash(tmp_path: Path) -> None:
    s = summary(slo_attainment=None, ttft_p99_s=None, avg_gpu_util_by_role={"prefill": None, "decode": 0.5})
    del s["cost"]
    path = write_html_report(tmp_path, "t", {"p": s}, [])
    text = path.read_text(encoding="utf-8")
    by_header = {}
    for table_id in ("comparison", "details"):
        table = read_table(text, table_id)
        by_header.update(dict(zip(table.headers, table.rows[0], strict=True)))
    for header in ("SLO attainment", "TTFT p99", "GPU util prefill", "cost"):
        assert by_header[header] == "—", header
    assert by_header["GPU util decode"] == "50.0 %"


def test_optional_columns_appear_only_when_some_summary_has_them(tmp_path: Path) -> None:
    plain = read_table(write_html_report(tmp_path / "a", "t", {"p": summary()}, []).read_text(encoding="utf-8"))
    assert "vs oracle" not in plain.headers and "× LB" not in plain.headers
    summaries = {
        "p": summary(
            scale_actions_per_hour=7.25, pd_ratio_deviation=0.125, gpu_hours_vs_oracle=1.1, gpu_hours_vs_lower_bound=1.5
        ),
        "q": summary(),
    }
    extended = read_table(write_html_report(tmp_path / "b", "t", summaries, []).read_text(encoding="utf-8"))
    p_row = dict(zip(extended.headers, extended.rows[0], strict=True))
    q_row = dict(zip(extended.headers, extended.rows[1], strict=True))
    assert (p_row["actions/h"], p_row["P/D dev"], p_row["vs oracle"]) == (
        "7.25",
        "0.125",
        "1.100",
    )
    assert p_row["× LB"] == "1.500"
    assert q_row["actions/h"] == q_row["P/D dev"] == q_row["vs oracle"] == "—"


def test_estimated_latencies_are_marked(tmp_path: Path) -> None:
    path = write_html_report(tmp_path, "t", {"fluid": summary(latency_estimated=True)}, [])
    text = path.read_text(encoding="utf-8")
    table = read_table(text)
    row = dict(zip(table.headers, table.rows[0], strict=True))
    assert row["TTFT p99"] == "644 ms (est.)"
    assert row["GPU-hours"] == "39.4"
    details = read_table(text, "details")
    assert dict(zip(details.headers, details.rows[0], strict=True))["TTFT p50"] == "104 ms (est.)"


def test_per_service_table_lists_slo_targets(tmp_path: Path) -> None:
    path = write_html_report(tmp_path, "t", {"a": summary(), "b": summary()}, [])
    services = read_table(path.read_text(encoding="utf-8"), "services")
    assert [r[:2] for r in services.rows] == [["a", "chat"], ["b", "chat"]]
    row = dict(zip(services.headers, services.rows[0], strict=True))
    assert (row["TTFT SLO"], row["TBT SLO"]) == ("1,000 ms", "50.0 ms")


def aggregated(value: Any) -> Any:
    """``value`` as compare prints it: every number ``{mean, ci95, n}`` over three seeds."""
    if isinstance(value, dict):
        return {k: aggregated(v) for k, v in value.items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"mean": value, "ci95": 0.5 * value if isinstance(value, float) else None, "n": 3}
    return value


def test_figures_over_seeds_show_their_mean_and_interval_in_every_table(tmp_path: Path) -> None:
    text = write_html_report(tmp_path, "t", {"a": aggregated(summary())}, []).read_text(encoding="utf-8")
    row = dict(zip(read_table(text).headers, read_table(text).rows[0], strict=True))
    assert row["GPU-hours"] == "39.4± 19.7"  # the interval sits on its own line under the mean
    services = read_table(text, "services")
    by_header = dict(zip(services.headers, services.rows[0], strict=True))
    assert (by_header["completed"], by_header["SLO attainment"], by_header["TTFT SLO"]) == ("990", "99.0 %", "1,000 ms")


def test_images_are_referenced_relative_to_the_report(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    image = tmp_path / "plots" / "a b.png"
    image.write_bytes(PNG_SIGNATURE)
    text = write_html_report(tmp_path, "t", {}, [image]).read_text(encoding="utf-8")
    assert read_table(text).images == ["plots/a%20b.png"]
    assert "no runs" in text


# -- failed by scale-in ---------------------------------------------------------------------------


def test_html_shows_failed_and_failed_by_scale_in_when_summaries_have_them(tmp_path: Path) -> None:
    per_service = summary()["services"]
    per_service["chat"] = {**per_service["chat"], "requests_failed_by_scale_in": 7}
    summaries = {
        "heteroscale": summary(requests_failed=0, requests_failed_by_scale_in=0),
        "hpa": summary(requests_failed=9, requests_failed_by_scale_in=7, services=per_service),
    }
    text = write_html_report(tmp_path, "t", summaries, []).read_text(encoding="utf-8")
    table = read_table(text)
    rows = {r[0]: dict(zip(table.headers, r, strict=True)) for r in table.rows}
    assert (rows["heteroscale"]["failed"], rows["heteroscale"]["killed"]) == ("0", "0")
    assert (rows["hpa"]["failed"], rows["hpa"]["killed"]) == ("9", "7")
    services = read_table(text, "services")
    by_policy = {r[0]: dict(zip(services.headers, r, strict=True)) for r in services.rows}
    assert by_policy["hpa"]["failed by scale-in"] == "7"
    assert by_policy["heteroscale"]["failed by scale-in"] == "—"  # its per-service figures do not say


def test_html_leaves_out_the_failure_columns_for_summaries_without_them(tmp_path: Path) -> None:
    table = read_table(write_html_report(tmp_path, "t", {"p": summary()}, []).read_text(encoding="utf-8"))
    assert "failed" not in table.headers and "killed" not in table.headers


def compare_policy(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "gpu_hours_vs_oracle": 1.05,
        "scale_actions_per_hour": 4.0,
        "pd_ratio_deviation": 0.01,
        "requests_failed": 0,
    }
    return summary(**{**base, **overrides})


def test_compare_table_has_a_killed_column() -> None:
    result = {
        "scenario": "default",
        "seeds": 1,
        "policies": {
            "heteroscale": compare_policy(requests_failed_by_scale_in=0),
            "hpa": compare_policy(requests_failed=1234, requests_failed_by_scale_in=1200),
            "old": compare_policy(),  # a summary from before the field existed
        },
    }
    lines = compare_table(result).splitlines()
    head = lines[1].split()
    assert head[-6:] == ["failed", "killed", "ramp", "SLO", "ramp", "miss"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["heteroscale"][-4:] == ["0", "0", "—", "—"]
    assert rows["hpa"][-4:] == ["1,234", "1,200", "—", "—"]
    assert rows["old"][-4:] == ["0", "—", "—", "—"]


def test_compare_table_shows_slo_during_ramps_over_all_services() -> None:
    ramps = {
        "a": {"ramp_requests": 900, "ramp_missed": 90, "ramp_attainment": 0.9},
        "b": {"ramp_requests": 100, "ramp_missed": 10, "ramp_attainment": 0.9},
    }
    clean = {"a": {"ramp_requests": 1000, "ramp_missed": 0, "ramp_attainment": 1.0}}
    result = {
        "scenario": "ramps",
        "seeds": 1,
        "policies": {"reactive": compare_policy(ramps=ramps), "predictive": compare_policy(ramps=clean)},
    }
    rows = {line.split()[0]: line.split() for line in compare_table(result).splitlines()[2:]}
    assert rows["reactive"][-3:] == ["90.0", "%", "100"]
    assert rows["predictive"][-3:] == ["100.0", "%", "0"]


def test_compare_table_shows_the_mean_over_seeds() -> None:
    agg = compare_policy(requests_failed={"mean": 2.5, "ci95": 1.0}, requests_failed_by_scale_in={"mean": 2.5})
    line = compare_table({"scenario": "s", "seeds": 2, "policies": {"hpa": agg}}).splitlines()[2]
    assert line.split()[-4:-2] == ["2.500", "2.500"]


def test_summary_table_says_how_many_failed_by_scale_in() -> None:
    s = summary(
        scenario="default",
        fidelity="request",
        seed=0,
        simulated_s=3600.0,
        requests_total=1000,
        requests_completed=985,
        requests_failed=12,
        requests_failed_by_scale_in=10,
        requests_unfinished=3,
        gpu_hours_by_role={"prefill": 10.0, "decode": 29.4},
        gpu_hours_by_sku={"h800": 39.4},
        avg_sm_activity_by_role={"prefill": 0.3, "decode": 0.5},
        wall_s=1.0,
    )
    s["services"]["code"] = {**s["services"]["chat"], "requests_failed": 2, "requests_failed_by_scale_in": 2}
    s["services"]["chat"] = {**s["services"]["chat"], "requests_failed": 10, "requests_failed_by_scale_in": 8}
    text = summary_table(s)
    assert "985 completed, 12 failed (10 by scale-in), 3 unfinished" in text
    assert "chat: 990/1,000 done, 10 failed (8 by scale-in)" in text
    del s["requests_failed_by_scale_in"]
    assert "12 failed, 3 unfinished" in summary_table(s)


def test_no_legend_is_clipped_with_many_long_policy_names() -> None:
    import matplotlib.style

    from heteroscale.reports import plots

    names = ["no-autoscaling", *(f"signal:{s}-sm-activity-{k}" for k, s in enumerate(("prefill", "decode") * 4))]
    policies = [plots._Policy(n, f"C{i % 10}", plots._by_service(series())) for i, n in enumerate(names)]
    with matplotlib.style.context("default"):
        figures = [
            plots._load_and_instances(policies, ["chat"]),
            plots._utilisation(policies, ["chat"]),
            plots._latency(policies, ["chat"], {}),
        ]
        for fig in figures:
            fig.canvas.draw()
            box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
            assert box.x0 >= 0.0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)
            assert box.y0 >= 0.0 and box.y1 <= fig.bbox.height


def test_highlighted_policies_lead_the_legend_in_the_order_given(tmp_path: Path) -> None:
    from heteroscale.reports import plots

    runs = {
        "hpa": RunSeries("hpa", series()),
        "kthena": RunSeries("kthena", series()),
        "heteroscale": RunSeries("heteroscale", series()),
    }
    drawn: list[list[str]] = []
    original = plots._legend

    def spy(fig: Any, policies: Any, extra: Any = ()) -> None:  # a fake that records, then draws
        drawn.append([p.label for p in policies if not p.background])
        original(fig, policies, extra)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_legend", spy)
        write_plots(tmp_path, runs, highlight=["heteroscale", "kthena"])
    assert drawn == [["heteroscale", "kthena"]] * 3
