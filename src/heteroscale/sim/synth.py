"""A generator of Mooncake-format traces with shared prefixes (prefix reuse the public traces lack).

The bundled Azure traces say nothing about prefix reuse, and the simulator otherwise falls back to a
flat ``prefix_cache_hit_rate``. This module writes Mooncake JSONL (``timestamp`` ms, ``input_length``,
``output_length``, ``hash_ids``: one id per 512-token block, equal ids for equal prefixes), whose
reuse :func:`~heteroscale.sim.traces.read_mooncake` turns into per-request cached tokens.

The model, one request per row of a source request trace (arrival, input, output):

* a population of ``prefixes`` shared prefixes (system prompts, documents), prefix ``i`` of
  ``b_i`` whole blocks; the lengths are ``b_i = round(c · x_i)`` with ``x_i`` log-normal (σ =
  ``length_sigma``, mean 1), and the scale ``c`` solved so that the expected token hit ratio
  under an unbounded prefix cache equals ``hit_ratio`` (see :func:`expected_hit_ratio`);
* with probability ``shared_fraction`` a request starts with a shared prefix, prefix ``i`` with
  probability ∝ ``1 / i^zipf_s`` (Zipf popularity); otherwise it shares nothing;
* after the prefix comes the request's own part: the source row's input length (so prompts grow
  by the prefix), in fresh blocks; the output length and the arrival are the source row's.

A request's blocks are its prefix's ids, then new ids; ids are numbered in order of first use, as in
Mooncake's released traces. The first request with a prefix misses it; every later one hits all of
its blocks (the cache never evicts, as in ``read_mooncake``). Prefixes end on block boundaries, so
the hit is exactly ``b_i`` blocks.

Same source and same :class:`PrefixReuseSpec` (seed included) → the same bytes. Draw order: the
prefix lengths (``prefixes`` normals), then per request one uniform for "shared?" and one for the
prefix rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from heteroscale.errors import ConfigError
from heteroscale.sim.traces import RequestTrace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

KINDS = ("prefix-reuse",)
_MAX_MEAN_PREFIX_BLOCKS = 256  # 128k tokens: beyond any context window we serve


@dataclass(frozen=True, slots=True)
class PrefixReuseSpec:
    """Parameters of the prefix-reuse model; each default says where it comes from.

    * ``hit_ratio`` 0.5 — Mooncake's release notes for its traces: "up to 50% cache hit ratio"
      (kvcache-ai/Mooncake, FAST25-release/README.md, pointing at §4 of the technical report,
      arXiv:2407.00079). The token hit ratio with an unbounded cache, what ``read_mooncake`` measures.
    * ``prefixes`` 200 — assumption: a service with a few hundred popular system prompts / documents.
    * ``zipf_s`` 1.0 — assumption: Zipf-like popularity. Mooncake reports a very skewed reuse (over
      half the blocks used once, a few used tens of thousands of times); s = 1 is the classic
      content-popularity exponent.
    * ``shared_fraction`` 0.9 — assumption: most requests carry a shared system prompt or document;
      one in ten shares nothing.
    * ``length_sigma`` 1.0 — assumption: prefix lengths spread log-normally (σ of the log), so a few
      long documents sit beside many short prompts.
    * ``block_tokens`` 512 — Mooncake's block size (the trace format's unit).
    * ``seed`` 0.
    """

    hit_ratio: float = 0.5
    prefixes: int = 200
    zipf_s: float = 1.0
    shared_fraction: float = 0.9
    length_sigma: float = 1.0
    block_tokens: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hit_ratio) and 0 <= self.hit_ratio < 1):
            raise ConfigError(f"hit_ratio must be in [0, 1), got {self.hit_ratio}")
        if isinstance(self.prefixes, bool) or not isinstance(self.prefixes, int) or self.prefixes < 1:
            raise ConfigError(f"prefixes must be a positive integer, got {self.prefixes!r}")
        if not (math.isfinite(self.zipf_s) and self.zipf_s >= 0):
            raise ConfigError(f"zipf_s must be a number ≥ 0, got {self.zipf_s}")
        if not (math.isfinite(self.shared_fraction) and 0 < self.shared_fraction <= 1):
            raise ConfigError(f"shared_fraction must be in (0, 1], got {self.shared_fraction}")
        if not (math.isfinite(self.length_sigma) and 0 <= self.length_sigma <= 3):
            raise ConfigError(f"length_sigma must be in [0, 3], got {self.length_sigma}")
        if isinstance(self.block_tokens, bool) or not isinstance(self.block_tokens, int) or self.block_tokens < 1:
            raise ConfigError(f"block_tokens must be a positive integer, got {self.block_tokens!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer ≥ 0, got {self.seed!r}")


@dataclass(frozen=True, slots=True, eq=False)
class PrefixTrace:
    """A generated trace: the JSONL rows' columns and the model's numbers behind them."""

    arrival_ms: IntArray
    input_tokens: IntArray
    output_tokens: IntArray
    hash_ids: tuple[tuple[int, ...], ...]
    prefix_blocks: IntArray  # b_i per prefix (popularity rank order)
    expected_hit_ratio: float  # of the solved lengths on this source (the target, up to rounding)
    hit_ratio: float  # what an unbounded cache hits on these rows (what read_mooncake derives)

    def jsonl_lines(self) -> Iterator[str]:
        """The trace as Mooncake JSONL lines (compact JSON, keys in Mooncake's order, ``\\n`` ends)."""
        for t, n_in, n_out, ids in zip(
            self.arrival_ms.tolist(),
            self.input_tokens.tolist(),
            self.output_tokens.tolist(),
            self.hash_ids,
            strict=True,
        ):
            row = {"timestamp": t, "input_length": n_in, "output_length": n_out, "hash_ids": list(ids)}
            yield json.dumps(row, separators=(",", ":")) + "\n"


def zipf_weights(count: int, exponent: float) -> FloatArray:
    """Popularity of ranks 1..count, ∝ 1 / rank^exponent, summing to 1."""
    weights: FloatArray = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** exponent
    return weights / float(weights.sum())


def expected_hit_ratio(
    prefix_blocks: IntArray, popularity: FloatArray, shared_fraction: float, own_tokens: IntArray, block_tokens: int
) -> float:
    """Expected token hit ratio of ``n = len(own_tokens)`` independent requests, unbounded cache.

    Prefix ``i`` is used ``U_i ~ Binomial(n, f·p_i)`` times and every use but the first hits its
    ``b_i`` blocks, so E[hit tokens] = Σ_i B·b_i·(n·f·p_i − P(U_i ≥ 1)) with P(U_i ≥ 1) =
    1 − (1 − f·p_i)^n, and E[input tokens] = Σ own + n·f·Σ_i p_i·B·b_i. The ratio of the two
    expectations; the measured ratio of sums is within sampling noise of it for thousands of rows.
    """
    n = len(own_tokens)
    if n == 0:
        return 0.0
    use = shared_fraction * popularity
    blocks = prefix_blocks.astype(np.float64) * block_tokens
    with np.errstate(divide="ignore"):  # f·p_i = 1 (one prefix, all shared): log1p(-1) = -inf is right
        never = np.expm1(n * np.log1p(-use))  # −P(U_i ≥ 1)
    hits = float(np.sum(blocks * (n * use + never)))
    inputs = float(own_tokens.sum()) + n * float(np.sum(use * blocks))
    return hits / inputs if inputs > 0 else 0.0


def _solve_lengths(spec: PrefixReuseSpec, shape: FloatArray, popularity: FloatArray, own: IntArray) -> IntArray:
    """Prefix lengths in blocks, ``round(c · shape)``, with ``c`` bisected to meet ``spec.hit_ratio``."""

    def blocks(scale: float) -> IntArray:
        return np.rint(scale * shape).astype(np.int64)

    def ratio(scale: float) -> float:
        return expected_hit_ratio(blocks(scale), popularity, spec.shared_fraction, own, spec.block_tokens)

    if spec.hit_ratio == 0:
        return blocks(0.0)
    hi = 1.0
    while ratio(hi) < spec.hit_ratio:
        hi *= 2
        if hi > _MAX_MEAN_PREFIX_BLOCKS:
            ceiling = ratio(hi)
            raise ConfigError(
                f"hit_ratio {spec.hit_ratio:g} is out of reach: at most about {ceiling:.3f} with "
                f"{spec.prefixes} prefixes, zipf_s {spec.zipf_s:g} and shared_fraction {spec.shared_fraction:g} "
                f"(the first use of each prefix misses); raise shared_fraction or lower prefixes"
            )
    lo = 0.0
    for _ in range(60):  # the ratio grows with the scale; rounding to blocks makes it a step function
        mid = (lo + hi) / 2
        if ratio(mid) < spec.hit_ratio:
            lo = mid
        else:
            hi = mid
    below, above = blocks(lo), blocks(hi)
    ratio_below, ratio_above = ratio(lo), ratio(hi)
    return below if abs(ratio_below - spec.hit_ratio) < abs(ratio_above - spec.hit_ratio) else above


def generate_prefix_trace(source: RequestTrace, spec: PrefixReuseSpec) -> PrefixTrace:
    """Shared-prefix requests on ``source``'s arrivals and lengths (see the module docstring)."""
    n = len(source)
    if n == 0:
        raise ConfigError(f"{source.name}: no requests to take arrivals and lengths from")
    rng = np.random.default_rng(spec.seed)
    sigma = spec.length_sigma
    shape = np.exp(sigma * rng.standard_normal(spec.prefixes) - sigma * sigma / 2)  # log-normal, mean 1
    popularity = zipf_weights(spec.prefixes, spec.zipf_s)
    own = source.input_tokens
    prefix_blocks = _solve_lengths(spec, shape, popularity, own)
    draws = rng.random((n, 2))
    shared = draws[:, 0] < spec.shared_fraction
    cumulative = np.cumsum(popularity)
    rank = np.minimum(np.searchsorted(cumulative, draws[:, 1] * cumulative[-1], side="right"), spec.prefixes - 1)
    rank = np.where(shared, rank, -1)
    block = spec.block_tokens
    arrival_ms = np.rint(source.arrival_s * 1000.0).astype(np.int64)
    inputs = own.copy()
    ids_out: list[tuple[int, ...]] = []
    prefix_ids: dict[int, tuple[int, ...]] = {}
    next_id = 0
    hit_tokens = 0
    for k, (r, n_own) in enumerate(zip(rank.tolist(), own.tolist(), strict=True)):
        head: tuple[int, ...] = ()
        if r >= 0 and prefix_blocks[r] > 0:
            known = prefix_ids.get(r)
            if known is None:
                known = tuple(range(next_id, next_id + int(prefix_blocks[r])))
                next_id += len(known)
                prefix_ids[r] = known
            else:
                hit_tokens += len(known) * block
            head = known
        own_blocks = -(-n_own // block)  # the request's own part starts on a fresh block
        ids_out.append(head + tuple(range(next_id, next_id + own_blocks)))
        next_id += own_blocks
        inputs[k] = len(head) * block + n_own
    total = int(inputs.sum())
    return PrefixTrace(
        arrival_ms=arrival_ms,
        input_tokens=inputs,
        output_tokens=source.output_tokens.copy(),
        hash_ids=tuple(ids_out),
        prefix_blocks=prefix_blocks,
        expected_hit_ratio=expected_hit_ratio(prefix_blocks, popularity, spec.shared_fraction, own, block),
        hit_ratio=hit_tokens / total if total else 0.0,
    )
