"""Fitting a :class:`~heteroscale.perf.calibrate.Calibration` to profile rows.

:func:`fit_engine` fits what a :class:`FitSpec` asks for — the efficiencies shared by every SKU or
one set per SKU (compute, optionally attention apart from compute, memory bandwidth) and the engine
terms it names; every other term keeps the spec's ``base`` value. :func:`fit_calibration` is the
historical pooled fit on the measured Splitwise llama2-70b rows (a100-80g and h100-sxm at TP 2/4/8;
:func:`exclusion_reason` says what is left out and why), whose efficiencies the ``current`` engine
profile uses.

Method: with each row's roofline regime fixed (compute- or memory-bound), every row's time is linear
in the inverse efficiencies and the engine terms; we solve least squares on *relative* residuals with
box bounds (small active-set method), re-evaluate the regimes and repeat, then run a few iteratively
reweighted rounds that move the fit towards least absolute relative error (the targets are medians;
a few outlying points — e.g. the 2023 engine's jump in prefill cost beyond ~2k batched tokens at
TP4/8 — should not drag every other row). ``kernel_only`` rows (GPU kernel time) get no host
overhead columns. ``comm_bw_eff`` is fitted only where the spec asks (``fit_comm_bw``, the engine
profiles but for ``measured-2023``, see :mod:`heteroscale.perf.engines`); the pooled fit keeps the
prior: there it trades off against the other terms (it lands at ≈0.27 link efficiency with ≈0.98
bandwidth efficiency, absorbing the 2023 engine's prefill step beyond ≈4k tokens).
``large_message_comm_bw_eff`` (all-reduce messages of at least ``base.large_message_bytes``; the
rows' link time is split at that size) is fitted only where the spec asks
(``fit_large_message_comm``), with a prior at the small-message efficiency (no knee); elsewhere large
messages keep the base's value, the small-message one unless the base sets its own. A spec with
``prior_weight > 0`` adds a weak Gaussian prior centred on its base values (:func:`_prior_rows`),
which settles the directions the rows cannot (e.g. per-layer against per-step latency when every row
has one layer count); ``max_hbm_eff`` caps the bandwidth efficiency at what a memory system can
stream. Closed-form numpy: deterministic, milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from heteroscale.domain.hardware import GpuSku, ModelSpec, Role
from heteroscale.perf.calibrate import ENGINE_TERMS, Calibration, SkuEfficiency
from heteroscale.perf.profiles import ProfileRow
from heteroscale.perf.roofline import RooflineTerms, roofline_terms

FIT_MODEL_ID = "llama2-70b"
FIT_SKU_IDS = frozenset({"a100-80g", "h100-sxm"})
FIT_TPS = frozenset({2, 4, 8})
ANOMALOUS_TP = 2
ANOMALOUS_BATCH = 64

HOST_TERMS = (
    "prefill_step_overhead_s",
    "decode_step_overhead_s",
    "decode_seq_overhead_s",
    "worker_dispatch_overhead_s",
)
"""Engine terms that are host time (not part of a ``kernel_only`` row)."""

_INV_BOUNDS = (1.0, 20.0)  # efficiencies between 5 % and 100 % of peak
_TERM_BOUNDS: Mapping[str, tuple[float, float]] = {
    "allreduce_hop_latency_s": (0.0, 1e-3),
    "prefill_step_overhead_s": (0.0, 1.0),
    "decode_step_overhead_s": (0.0, 1.0),
    "decode_seq_overhead_s": (0.0, 0.05),
    "decode_layer_latency_bytes": (0.0, 10.0),  # GB in the solver
    "prefill_layer_latency_bytes": (0.0, 10.0),
    "allreduce_call_latency_s": (0.0, 1e-3),
    "worker_dispatch_overhead_s": (0.0, 0.1),
}
_PRIOR_SCALES: Mapping[str, float] = {
    "allreduce_hop_latency_s": 5e-6,
    "prefill_step_overhead_s": 0.01,
    "decode_step_overhead_s": 0.01,
    "decode_seq_overhead_s": 1e-4,
    "decode_layer_latency_bytes": 0.5,  # GB
    "prefill_layer_latency_bytes": 0.5,
    "allreduce_call_latency_s": 5e-5,
    "worker_dispatch_overhead_s": 0.01,
}
"""One prior standard deviation of each engine term: the order of magnitude a 2023 engine shows."""
_PRIOR_SCALE_INV_EFF = 1.0  # inverse efficiency ± 1 around the base's (e.g. 1/0.6 ± 1: 37–100 % of peak)
_GB_TERMS = frozenset({"decode_layer_latency_bytes", "prefill_layer_latency_bytes"})
_LSQ_ROUNDS = 4  # regime re-evaluation rounds of plain least squares
_IRLS_ROUNDS = 6
_IRLS_FLOOR = 0.01  # relative residual below which a row's L1 weight stops growing


@dataclass(frozen=True, slots=True)
class FitSpec:
    """What :func:`fit_engine` estimates: pooled or per-SKU efficiencies, attention apart from GEMMs
    or not, and which engine terms (names from ``ENGINE_TERMS``); the rest keeps ``base``'s values,
    which are also the solver's starting point."""

    label: str
    per_sku: bool = False
    separate_attention: bool = False
    fitted_terms: tuple[str, ...] = ENGINE_TERMS[:5]
    base: Calibration = field(default_factory=Calibration.default)
    prior_weight: float = 0.0  # weak priors at ``base`` (see _prior_rows); 0 = none
    max_hbm_eff: float = 1.0  # ceiling of the memory-bandwidth efficiency
    fit_comm_bw: bool = False  # fit ``comm_bw_eff`` (the engine's all-reduce bandwidth); else keep ``base``'s
    fit_large_message_comm: bool = False  # fit ``large_message_comm_bw_eff``; else keep ``base``'s

    def __post_init__(self) -> None:
        unknown = [name for name in self.fitted_terms if name not in ENGINE_TERMS]
        if unknown:
            raise ValueError(f"FitSpec {self.label!r}: unknown engine term(s) {', '.join(unknown)}")


def exclusion_reason(row: ProfileRow) -> str | None:
    """Why a profile row is not used by :func:`fit_calibration`, or ``None`` if it is.

    * Not measured (AIConfigurator estimates; decode rows of ``h100-80gb-pcap``, whose
      ``token_time`` column is identical to ``h100-80gb`` at every point, i.e. copied, not measured).
    * ``h100-80gb-pcap`` prefill rows: measured, but on a power-capped H100 that is no catalog SKU
      (its peak is not the datasheet's), so they would bias the shared efficiency factors.
    * Not llama2-70b on a100-80g / h100-sxm at TP 2/4/8 (the pooled fit predates bloom-176b's entry).
    * TP2 at batch 64: anomalous — prefill of 64 prompts is ~8x *faster* than of 32 and the decode
      step is faster than at batch 32, on both SKUs. The likely cause is memory: with a 90 % memory
      budget 2 × 80 GB leave ≈6 GB for KV next to ≈138 GB of BF16 weights, while 64 sequences of
      640 tokens need ≈13.4 GB, so the engine cannot have run the nominal batch and these rows do
      not describe the stated work.
    """
    if not row.measured:
        return "not measured (estimate or copied column)"
    if row.model_id != FIT_MODEL_ID:
        return f"model {row.model_id!r} is not the fitted model {FIT_MODEL_ID!r}"
    if row.sku_id not in FIT_SKU_IDS:
        return f"hardware {row.hardware or row.sku_id!r} is not a fitted catalog SKU"
    if row.tp not in FIT_TPS:
        return f"tp={row.tp} is not one of the measured TP degrees"
    if row.tp == ANOMALOUS_TP and row.batch == ANOMALOUS_BATCH:
        return "TP2 batch-64 point is anomalous (KV cache cannot hold the batch)"
    return None


def fit_rows(rows: Sequence[ProfileRow]) -> list[ProfileRow]:
    """The rows :func:`fit_calibration` fits on, in input order."""
    return [row for row in rows if exclusion_reason(row) is None]


@dataclass(frozen=True, slots=True)
class _Design:
    """Row-wise pieces of the linear model, for both roofline regimes (times at 100 % of peak)."""

    gemm: npt.NDArray[np.float64]  # GEMM compute
    attn: npt.NDArray[np.float64]  # attention math (prefill)
    memory: npt.NDArray[np.float64]  # weight streaming, when memory-bound
    bw_always: npt.NDArray[np.float64]  # KV streaming in both regimes (decode)
    terms: dict[str, npt.NDArray[np.float64]]  # coefficient of each engine term
    comm: npt.NDArray[np.float64]  # link time at full bandwidth of small all-reduce messages (÷ comm_bw_eff)
    comm_large: npt.NDArray[np.float64]  # the same of large messages (÷ the large-message efficiency)
    group: npt.NDArray[np.int64]  # index of the row's efficiency group
    time_s: npt.NDArray[np.float64]


def _design(
    rows: Sequence[ProfileRow], terms: Sequence[RooflineTerms], groups: Sequence[str], large_message_bytes: float
) -> _Design:
    """``groups``: the SKU ids of a per-SKU fit (in parameter order), or ``[]`` for a pooled one; a
    row's all-reduces are large when its step's message reaches ``large_message_bytes``."""
    n = len(rows)
    gemm, attn, memory, bw_always, comm, comm_large, time_s = (np.zeros(n) for _ in range(7))
    columns = {name: np.zeros(n) for name in ENGINE_TERMS}
    group = np.zeros(n, dtype=np.int64)
    index = {g: i for i, g in enumerate(groups)}
    for i, (row, t) in enumerate(zip(rows, terms, strict=True)):
        group[i] = index.get(row.sku_id, 0)
        columns["allreduce_hop_latency_s"][i] = t.allreduce_hops_per_step
        columns["allreduce_call_latency_s"][i] = t.allreduce_calls_per_step
        memory[i] = t.weight_read_s
        time_s[i] = row.time_s
        host = 0.0 if row.kernel_only else 1.0
        columns["worker_dispatch_overhead_s"][i] = host * t.worker_dispatches_per_step
        if row.phase is Role.PREFILL:
            columns["prefill_step_overhead_s"][i] = host
            columns["prefill_layer_latency_bytes"][i] = t.layer_latency_s_per_byte * 1e9
            gemm[i] = row.new_tokens * t.prefill_compute_s_per_token
            attn[i] = (row.attn_units + row.prefix_units) * t.attn_compute_s_per_unit
            step_tokens = row.new_tokens
        else:
            columns["decode_step_overhead_s"][i] = host
            columns["decode_seq_overhead_s"][i] = host * row.batch
            columns["decode_layer_latency_bytes"][i] = t.layer_latency_s_per_byte * 1e9
            gemm[i] = row.batch * t.decode_compute_s_per_seq
            bw_always[i] = row.context_tokens * t.kv_read_s_per_token
            step_tokens = row.batch
        large = step_tokens * t.allreduce_message_bytes_per_token >= large_message_bytes
        (comm_large if large else comm)[i] = step_tokens * t.allreduce_s_per_token
    return _Design(gemm, attn, memory, bw_always, columns, comm, comm_large, group, time_s)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Parameter vector layout: per group ``1/compute, 1/hbm``, then the fitted engine terms, then
    per group ``1/attention`` when attention is separate, then ``1/comm_bw_eff`` and
    ``1/large_message_comm_bw_eff`` when they are fitted (this order keeps the pooled fit's solve
    identical to the historical 7-parameter one)."""

    n_groups: int
    fitted_terms: tuple[str, ...]
    separate_attention: bool
    max_hbm_eff: float = 1.0
    fit_comm: bool = False
    fit_comm_large: bool = False

    @property
    def size(self) -> int:
        return self.comm + (1 if self.fit_comm else 0) + (1 if self.fit_comm_large else 0)

    def compute(self, g: int) -> int:
        return 2 * g

    def hbm(self, g: int) -> int:
        return 2 * g + 1

    def term(self, name: str) -> int:
        return 2 * self.n_groups + self.fitted_terms.index(name)

    def attention(self, g: int) -> int:
        if not self.separate_attention:
            return self.compute(g)
        return 2 * self.n_groups + len(self.fitted_terms) + g

    @property
    def comm(self) -> int:
        """Index of ``1/comm_bw_eff`` (only when ``fit_comm``)."""
        attention = self.n_groups if self.separate_attention else 0
        return 2 * self.n_groups + len(self.fitted_terms) + attention

    @property
    def comm_large(self) -> int:
        """Index of ``1/large_message_comm_bw_eff`` (the last parameter; only when ``fit_comm_large``)."""
        return self.comm + (1 if self.fit_comm else 0)

    def bounds(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        lower = np.full(self.size, _INV_BOUNDS[0])
        upper = np.full(self.size, _INV_BOUNDS[1])
        for g in range(self.n_groups):
            lower[self.hbm(g)] = 1.0 / self.max_hbm_eff
        for name in self.fitted_terms:
            lower[self.term(name)], upper[self.term(name)] = _TERM_BOUNDS[name]
        return lower, upper


def _matrix(
    design: _Design, layout: _Layout, params: npt.NDArray[np.float64], base: Calibration
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Design matrix (absolute times) with each row's regime chosen at ``params``, and the offset of
    the terms that are not fitted."""
    g = design.group
    inv_c = params[[layout.compute(k) for k in range(layout.n_groups)]][g]
    inv_a = params[[layout.attention(k) for k in range(layout.n_groups)]][g]
    inv_bw = params[[layout.hbm(k) for k in range(layout.n_groups)]][g]
    if layout.separate_attention:
        compute_bound = design.gemm * inv_c + design.attn * inv_a >= design.memory * inv_bw
        gemm = design.gemm
    else:
        gemm = design.gemm + design.attn
        compute_bound = gemm * inv_c >= design.memory * inv_bw
    matrix = np.zeros((design.time_s.size, layout.size))
    for k in range(layout.n_groups):
        mine = g == k
        matrix[:, layout.compute(k)] = np.where(mine & compute_bound, gemm, 0.0)
        bw = np.where(compute_bound, 0.0, design.memory) + design.bw_always
        matrix[:, layout.hbm(k)] = np.where(mine, bw, 0.0)
        if layout.separate_attention:
            matrix[:, layout.attention(k)] = np.where(mine & compute_bound, design.attn, 0.0)
    if layout.fit_comm:
        tied = not layout.fit_comm_large and base.large_message_comm_bw_eff is None
        matrix[:, layout.comm] = design.comm + design.comm_large if tied else design.comm
    if layout.fit_comm_large:
        matrix[:, layout.comm_large] = design.comm_large
    offset = np.zeros(design.time_s.size)
    for name in ENGINE_TERMS:
        if name in layout.fitted_terms:
            matrix[:, layout.term(name)] = design.terms[name]
        else:
            value = getattr(base, name) / (1e9 if name in _GB_TERMS else 1.0)
            offset = offset + design.terms[name] * value
    return matrix, offset


def _bounded_weighted_lstsq(
    matrix: npt.NDArray[np.float64],
    target: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
    start: npt.NDArray[np.float64],
    bounds: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64]:
    """min Σ w·(A·p − b)² subject to lower ≤ p ≤ upper (small active-set method).

    Solve on the free parameters, clamp the ones that leave their box and fix them there, repeat.
    All-zero columns (no row informs the parameter) keep their ``start`` value.
    """
    lower, upper = bounds
    params = start.copy()
    fixed = ~np.any(matrix != 0.0, axis=0)
    sqrt_w = np.sqrt(weights)
    for _ in range(params.size + 1):
        free = ~fixed
        if not np.any(free):
            break
        rhs = target - matrix[:, fixed] @ params[fixed]
        solution, *_ = np.linalg.lstsq(matrix[:, free] * sqrt_w[:, None], rhs * sqrt_w, rcond=None)
        params[free] = solution
        outside = free & ((params < lower) | (params > upper))
        if not np.any(outside):
            break
        params = np.clip(params, lower, upper)
        fixed = fixed | outside
    return np.clip(params, lower, upper)


def _start(layout: _Layout, base: Calibration) -> npt.NDArray[np.float64]:
    params = np.zeros(layout.size)
    attention = base.prefill_compute_eff if base.attention_eff is None else base.attention_eff
    for k in range(layout.n_groups):
        params[layout.compute(k)] = 1.0 / base.prefill_compute_eff
        params[layout.hbm(k)] = 1.0 / base.decode_bw_eff
        params[layout.attention(k)] = 1.0 / attention
    for name in layout.fitted_terms:
        params[layout.term(name)] = getattr(base, name) / (1e9 if name in _GB_TERMS else 1.0)
    if layout.fit_comm:
        params[layout.comm] = 1.0 / base.comm_bw_eff
    if layout.fit_comm_large:
        params[layout.comm_large] = 1.0 / base.large_comm_bw_eff  # the prior: no knee
    return params


def _prior_rows(
    layout: _Layout, start: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pseudo-rows ``(p_i − start_i) / scale_i``: a Gaussian prior centred on the spec's base values.

    Where rows pin a parameter down the prior is negligible; where they cannot (e.g. all-reduce
    latency against per-layer latency when a fold holds one TP degree) it keeps the solution near the
    base values instead of at an arbitrary corner of the box.
    """
    scales = np.full(layout.size, _PRIOR_SCALE_INV_EFF)
    for name in layout.fitted_terms:
        scales[layout.term(name)] = _PRIOR_SCALES[name]
    return np.diag(1.0 / scales), start / scales


def _solve(design: _Design, layout: _Layout, spec: FitSpec) -> npt.NDArray[np.float64]:
    """Least squares on relative residuals, then IRLS towards least absolute relative error."""
    base = spec.base
    params = _start(layout, base)
    bounds = layout.bounds()
    scale = 1.0 / design.time_s
    comm = _fixed_comm_s(design, layout, base)
    weights = np.ones_like(design.time_s)
    prior_matrix, prior_target = _prior_rows(layout, params)
    for round_index in range(_LSQ_ROUNDS + _IRLS_ROUNDS):
        matrix, offset = _matrix(design, layout, params, base)
        target = (design.time_s - (comm + offset)) * scale
        matrix = matrix * scale[:, None]
        if round_index >= _LSQ_ROUNDS:
            weights = 1.0 / np.maximum(np.abs(matrix @ params - target), _IRLS_FLOOR)
        if spec.prior_weight > 0.0:
            # the prior's weight follows the rows' total weight, so it stays weak in every round
            prior_weights = np.full(layout.size, spec.prior_weight * float(weights.sum()))
            stacked = np.vstack([matrix, prior_matrix])
            params = _bounded_weighted_lstsq(
                stacked,
                np.concatenate([target, prior_target]),
                np.concatenate([weights, prior_weights]),
                params,
                bounds,
            )
        else:
            params = _bounded_weighted_lstsq(matrix, target, weights, params, bounds)
    return params


def _fixed_comm_s(design: _Design, layout: _Layout, base: Calibration) -> npt.NDArray[np.float64]:
    """Link time of the all-reduces whose efficiency is not fitted (a fitted one is a column of the
    matrix); large messages go with the small ones unless the efficiency of either is set apart."""
    tied = not layout.fit_comm_large and base.large_message_comm_bw_eff is None
    if tied:
        return np.zeros_like(design.comm) if layout.fit_comm else (design.comm + design.comm_large) / base.comm_bw_eff
    small = np.zeros_like(design.comm) if layout.fit_comm else design.comm / base.comm_bw_eff
    large = np.zeros_like(design.comm) if layout.fit_comm_large else design.comm_large / base.large_comm_bw_eff
    return small + large


def _terms(
    rows: Sequence[ProfileRow], models: Mapping[str, ModelSpec], skus: Mapping[str, GpuSku]
) -> list[RooflineTerms]:
    cache: dict[tuple[str, str, int], RooflineTerms] = {}
    out: list[RooflineTerms] = []
    for row in rows:
        key = (row.model_id, row.sku_id, row.tp)
        if key not in cache:
            if row.model_id not in models or row.sku_id not in skus:
                raise ValueError(f"fit: no catalog entry for model {row.model_id!r} on {row.sku_id!r}")
            cache[key] = roofline_terms(models[row.model_id], skus[row.sku_id], row.tp)
        out.append(cache[key])
    return out


def fit_engine(
    rows: Sequence[ProfileRow],
    models: Mapping[str, ModelSpec],
    skus: Mapping[str, GpuSku],
    spec: FitSpec,
) -> Calibration:
    """Fit ``spec`` on ``rows`` (all of them: filter first). Per-SKU fits give every SKU in the rows
    its own :class:`SkuEfficiency`; the shared fall-backs (for SKUs without rows) are the row-weighted
    harmonic means. Raises ``ValueError`` for no rows or a row without a catalog entry."""
    if not rows:
        raise ValueError(f"fit {spec.label!r}: no rows to fit")
    groups = sorted({row.sku_id for row in rows}) if spec.per_sku else []
    layout = _Layout(
        max(1, len(groups)),
        spec.fitted_terms,
        spec.separate_attention,
        spec.max_hbm_eff,
        spec.fit_comm_bw,
        spec.fit_large_message_comm,
    )
    design = _design(rows, _terms(rows, models, skus), groups, spec.base.large_message_bytes)
    params = _solve(design, layout, spec)
    counts = np.bincount(design.group, minlength=layout.n_groups).astype(float)

    def shared(index: list[int]) -> float:
        if len(index) == 1:
            return float(1.0 / params[index[0]])
        return float(counts.sum() / (counts @ params[index]))

    engine = {
        name: float(params[layout.term(name)]) * (1e9 if name in _GB_TERMS else 1.0) for name in spec.fitted_terms
    }
    per_sku = tuple(
        SkuEfficiency(
            g,
            float(1.0 / params[layout.compute(k)]),
            float(1.0 / params[layout.attention(k)]),
            float(1.0 / params[layout.hbm(k)]),
        )
        for k, g in enumerate(groups)
    )
    base = spec.base
    every = range(layout.n_groups)
    attention = shared([layout.attention(k) for k in every]) if spec.separate_attention else None
    return Calibration(
        prefill_compute_eff=shared([layout.compute(k) for k in every]),
        decode_bw_eff=shared([layout.hbm(k) for k in every]),
        comm_bw_eff=float(1.0 / params[layout.comm]) if layout.fit_comm else base.comm_bw_eff,
        allreduce_hop_latency_s=engine.get("allreduce_hop_latency_s", base.allreduce_hop_latency_s),
        prefill_step_overhead_s=engine.get("prefill_step_overhead_s", base.prefill_step_overhead_s),
        decode_step_overhead_s=engine.get("decode_step_overhead_s", base.decode_step_overhead_s),
        decode_seq_overhead_s=engine.get("decode_seq_overhead_s", base.decode_seq_overhead_s),
        decode_layer_latency_bytes=engine.get("decode_layer_latency_bytes", base.decode_layer_latency_bytes),
        prefill_sm_occupancy=base.prefill_sm_occupancy,
        decode_sm_occupancy=base.decode_sm_occupancy,
        label=f"{spec.label}({len(rows)} rows)",
        attention_eff=attention,
        prefill_layer_latency_bytes=engine.get("prefill_layer_latency_bytes", base.prefill_layer_latency_bytes),
        allreduce_call_latency_s=engine.get("allreduce_call_latency_s", base.allreduce_call_latency_s),
        worker_dispatch_overhead_s=engine.get("worker_dispatch_overhead_s", base.worker_dispatch_overhead_s),
        sku_efficiencies=per_sku,
        large_message_comm_bw_eff=(
            float(1.0 / params[layout.comm_large]) if layout.fit_comm_large else base.large_message_comm_bw_eff
        ),
        large_message_bytes=base.large_message_bytes,
    )


def fit_calibration(
    rows: Sequence[ProfileRow],
    models: Mapping[str, ModelSpec],
    skus: Mapping[str, GpuSku],
    comm_bw_eff: float | None = None,
) -> Calibration:
    """The pooled fit on the measured Splitwise llama2-70b rows (see :func:`exclusion_reason`).

    ``models`` / ``skus`` map catalog ids to specs; they must contain ``llama2-70b``, ``a100-80g``
    and ``h100-sxm``. ``comm_bw_eff`` is not identifiable from NVLink rows (all-reduce bandwidth is
    a few % of the time there) and stays at the default prior unless given. Raises ``ValueError``
    when no usable rows remain.
    """
    usable = [row for row in fit_rows(rows) if row.model_id in models and row.sku_id in skus]
    if not usable:
        raise ValueError("fit_calibration: no measured llama2-70b rows on a100-80g / h100-sxm to fit")
    prior = Calibration.default()
    base = prior if comm_bw_eff is None else replace(prior, comm_bw_eff=comm_bw_eff)
    return fit_engine(usable, models, skus, FitSpec(f"fit:splitwise-{FIT_MODEL_ID}", base=base))
