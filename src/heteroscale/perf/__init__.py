"""Performance model: per (model, GPU SKU, TP) prefill batch and decode step times; calibration.

Pure: no file I/O, no clock. Callers read profile tables and catalogs and pass text / specs in.
"""

from __future__ import annotations

from heteroscale.perf.calibrate import Calibration, SkuEfficiency
from heteroscale.perf.fit import FitSpec, exclusion_reason, fit_calibration, fit_engine, fit_rows
from heteroscale.perf.model import InstancePerf, build_instance_perf, predict_row_time_s
from heteroscale.perf.profiles import ProfileRow, parse_aiconfigurator_csv, parse_splitwise_csv
from heteroscale.perf.roofline import RooflineTerms, kv_capacity_tokens, roofline_terms

__all__ = [
    "Calibration",
    "FitSpec",
    "InstancePerf",
    "ProfileRow",
    "RooflineTerms",
    "SkuEfficiency",
    "build_instance_perf",
    "exclusion_reason",
    "fit_calibration",
    "fit_engine",
    "fit_rows",
    "kv_capacity_tokens",
    "parse_aiconfigurator_csv",
    "parse_splitwise_csv",
    "predict_row_time_s",
    "roofline_terms",
]
