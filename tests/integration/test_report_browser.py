"""report.html in a real browser: Debian's headless Chromium, driven by selenium through chromedriver.

At a 1,280 px window the main comparison table must not overflow (no horizontal scroll, its right edge
inside the window) and every image must load. Skips, with the reason, where Chromium, chromedriver or
selenium are missing (``make test`` installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heteroscale.cli.experiments import write_report
from heteroscale.experiments.compare import DEFAULT_POLICIES, MARK, PolicyRun
from heteroscale.sim.telemetry import RoleWindow, WindowRow

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTH_PX = 1280


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make test installs it)")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH_PX},900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()  # stops the chromedriver process and its browser


def _rows(scale: float) -> list[WindowRow]:
    role = RoleWindow(
        instances_ready=4, instances_starting=0, instances_draining=0, tps=20_000.0 * scale, gpu_util=0.6,
        sm_activity=0.4, compute_efficiency=0.3, queue_len=2.0, running=30.0, kv_usage=0.5,
    )  # fmt: skip
    return [
        WindowRow(
            t_s=30.0 * (i + 1),
            window_s=30.0,
            service="chat",
            prefill=role,
            decode=role,
            arrivals_per_s=12.0 + i,
            completions=360,
            ttft_p50_s=0.1,
            ttft_p90_s=0.3,
            ttft_p99_s=0.6,
            tbt_p50_s=0.014,
            tbt_p90_s=0.016,
            tbt_p99_s=0.02,
            mean_input_tokens=1e3,
            mean_output_tokens=200.0,
        )
        for i in range(20)
    ]


def _summary(k: int) -> dict[str, Any]:
    """A realistic compare row over 5 seeds: every figure {mean, ci95, n}, the widest the report shows."""

    def fig(mean: float, ci: float) -> dict[str, Any]:
        return {"mean": mean, "ci95": ci, "n": 5}

    return {
        "gpu_hours": fig(1180.4 + 10 * k, 12.34),
        "cost": fig(2102.2 + 10 * k, 21.5),
        "slo_attainment": fig(0.9991 - 0.01 * k, 0.0012),
        "gpu_hours_vs_lower_bound": fig(1.8374, 0.0213),
        "gpu_hours_vs_oracle": fig(1.0791, 0.0134),
        "scale_actions_per_hour": fig(14.125, 1.25),
        "pd_ratio_deviation": fig(0.0123, 0.0021),
        "ttft_p99_s": fig(1.617, 0.112),
        "tbt_p99_s": fig(0.0184, 0.0011),
        "ttft_p50_s": fig(0.2, 0.01),
        "tbt_p50_s": fig(0.014, 0.001),
        "requests_failed": fig(12345, 101),
        "requests_failed_by_scale_in": fig(1234, 12),
        "avg_gpu_util": fig(0.71, 0.01),
        "avg_gpu_util_by_role": {"prefill": fig(0.56, 0.01), "decode": fig(0.84, 0.01)},
        "avg_sm_activity": fig(0.53, 0.01),
        "peak_gpus_held": fig(184, 2),
        "scale_actions": fig(254, 10),
        "services": {"chat": {"slo_attainment": fig(0.99, 0.001), "slo": {"ttft_s": 2.0, "tbt_s": 0.1}}},
    }


class _Spec:
    name = "chat"

    class slo:
        ttft_s = 2.0
        tbt_s = 0.1


class _Run:
    spec = _Spec()


class _Scenario:
    name = "default"
    services = (_Run(),)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    names = [*DEFAULT_POLICIES, "heteroscale" + MARK]
    policies = {name: _summary(k) for k, name in enumerate(names)}
    runs = {name: [PolicyRun(name, 0, {"gpu_hours": 1.0}, _rows(1.0 + 0.1 * k), 0)] for k, name in enumerate(names)}
    result: dict[str, Any] = {"policies": policies, "targets": {"chat": {"ttft_s": 1.5, "margin": 0.75}}}
    write_report(out, "compare: default", result, runs, _Scenario())
    return out / "report.html"


def test_the_main_table_fits_1280_px_and_every_image_loads(browser: Any, report: Path) -> None:
    browser.get(report.as_uri())
    table = browser.find_element("id", "comparison")
    scroll = browser.execute_script("return arguments[0].parentElement.scrollWidth;", table)
    client = browser.execute_script("return arguments[0].parentElement.clientWidth;", table)
    right = browser.execute_script("return arguments[0].getBoundingClientRect().right;", table)
    viewport = browser.execute_script("return document.documentElement.clientWidth;")
    assert viewport <= WIDTH_PX
    assert scroll <= client, f"the comparison table overflows its box: {scroll} px > {client} px"
    assert right <= viewport, f"the comparison table ends at {right} px, past the {viewport} px window"
    images = browser.find_elements("tag name", "img")
    assert len(images) == 4  # the GPU-hours vs SLO chart and the three time-series plots
    for image in images:
        loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", image)
        assert loaded, image.get_attribute("src")
    verdict = browser.find_element("css selector", "ul.verdict li").text
    assert verdict.startswith("default / chat:")
