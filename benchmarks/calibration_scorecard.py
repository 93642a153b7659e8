"""The calibration scorecard: the performance model against every packaged measured source, held out.

Prints ``heteroscale calibrate --report`` (per source: the engine profile and its assumptions, the
split, the error per phase and regime, the per-SKU efficiencies with their range over the folds;
then the AIConfigurator estimates outside the target and the ``current`` profile on the measured
rows), then one figure line per source and the time the whole scorecard took.

Target: median ≤ 10 % and p90 ≤ 25 % of the absolute relative error on every measured source, for
its engine profile, on held-out rows. Exit code 1 if a source misses it (the Makefile runs this
line with ``-`` so the other benchmarks still run).
Run: ``.venv/bin/python benchmarks/calibration_scorecard.py``.
"""

from __future__ import annotations

import sys
import time

from heteroscale.cli.calibrate import packaged_scorecard
from heteroscale.reports.calibration import scorecard_text, verdict


def main() -> int:
    start_s = time.perf_counter()
    card = packaged_scorecard()
    elapsed_s = time.perf_counter() - start_s
    print(scorecard_text(card))
    print()
    for score in (*card.held_out, *card.estimates):
        strict = (
            ""
            if score.strict is None
            else f" strict_median={score.strict.median:.4f} strict_p90={score.strict.p90:.4f}"
        )
        print(
            f"scorecard source={score.source} engine={score.engine} n={score.overall.n} "
            f"median={score.overall.median:.4f} p90={score.overall.p90:.4f}{strict} target={verdict(score)}"
        )
    print(f"scorecard_time_s={elapsed_s:.2f}")
    return 0 if all(s.target_met for s in card.held_out) else 1


if __name__ == "__main__":
    sys.exit(main())
