"""ServiceStats keeps each completion's values in plain lists for the open telemetry window and moves
them to the run's arrays when the window closes; the summary reads both."""

from __future__ import annotations

import numpy as np

from heteroscale.sim.records import PER_REQUEST, ServiceStats
from heteroscale.sim.summary import _quantiles
from heteroscale.sim.telemetry import percentile


def _complete(st: ServiceStats, ttft_s: float, tbt_s: float | None, e2e_s: float) -> None:
    st.complete(ttft_s, tbt_s, 100, 10)
    st.w_e2e.append(e2e_s)


def test_values_join_closed_windows_and_the_open_one() -> None:
    st = ServiceStats(ttft_slo_s=1.0, tbt_slo_s=0.1)
    _complete(st, 0.5, 0.05, 2.0)
    _complete(st, 1.5, None, 3.0)  # a one-token output has no TBT
    st.reset_window()
    assert st.w_ttft == [] and st.w_e2e == []  # the window's lists start afresh
    _complete(st, 0.25, 0.2, 1.0)

    assert sorted(st.values("ttft")) == [0.25, 0.5, 1.5]
    assert sorted(st.values("tbt")) == [0.05, 0.2]
    assert sorted(st.values("e2e")) == [1.0, 2.0, 3.0]
    assert list(st.values("queue")) == []
    assert st.completed == 3 and st.met_slo == 1
    # reading changes nothing: a second read and a closed window give the same values
    assert sorted(st.values("ttft")) == [0.25, 0.5, 1.5]
    st.reset_window()
    assert sorted(st.values("ttft")) == [0.25, 0.5, 1.5]
    assert set(st.closed) == set(PER_REQUEST)


def test_summary_quantiles_equal_percentile_of_the_sorted_python_list() -> None:
    rng = np.random.default_rng(7)
    a, b = ServiceStats(1.0, 0.1), ServiceStats(1.0, 0.1)
    for i, x in enumerate(rng.exponential(0.3, size=2001).tolist()):
        st = a if i % 3 else b
        st.complete(x, None, 10, 1)
        if i % 97 == 0:
            st.reset_window()
    both = sorted([*a.values("ttft"), *b.values("ttft")])
    expected = [percentile(both, q) for q in (0.5, 0.9, 0.99)]
    got = _quantiles([a, b], "ttft")
    assert got == expected  # the same floats, not merely close
    assert all(type(v) is float for v in got)
    assert _quantiles([ServiceStats(1.0, 0.1)], "ttft") == [None, None, None]
