"""What the fluid engine knows of a service's load: per-request length statistics for its preferred
prefill shape (:class:`LengthMix`), and the Erlang-C and mixture-quantile maths of its latency
estimates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heteroscale.perf import InstancePerf
from heteroscale.sim.engine import ServiceLoad

# the queueing wait of those that wait is exponential: 8 quantile points stand for it
WAIT_QUANTILES = tuple(-math.log(1.0 - (k - 0.5) / 8) for k in range(1, 9))


@dataclass(slots=True)
class LengthMix:
    """Per-request length statistics of a service's load, for one prefill shape."""

    new: np.ndarray  # cache-missed prompt tokens per request
    solo_s: np.ndarray  # solo prefill wall time per request
    tok_per_s: float  # Σ new / Σ solo time
    kfrac: float  # kernel / wall
    flops_per_token: float
    mean_new: float
    mean_m: float  # mean decode steps per request (output - 1)
    mean_m_decoding: float  # mean decode steps per request that decodes (output > 1): Little's law
    ctx_member: float  # time-averaged context of one decode member
    resv_per_req: float  # KV reservation per request (input + output)
    frac_single: float  # share of requests with one output token (no TBT)
    steps: np.ndarray  # decode steps per request (output − 1)
    frac_over_kv: float = 0.0  # share of requests that no decode shape's KV cache can hold
    # batched prefill: a batch of T tokens takes about base_s + per_token_s·T wall seconds (kernel:
    # kernel_base_s + kernel_per_token_s·T), fitted between a solo prompt of the mix and full batches
    # of up to ``budget_tokens`` packed from it; no gain when prompts fill the budget alone
    base_s: float = 0.0
    per_token_s: float = 0.0
    kernel_base_s: float = 0.0
    kernel_per_token_s: float = 0.0
    budget_tokens: float = 0.0
    solo_cs2: float = 1.0  # squared coefficient of variation of solo prefill times

    def queue_wait_factor(self) -> float:
        """Allen–Cunneen: an M/G/c queue waits (1 + cs²)/2 times as long as M/M/c (cs² of service times)."""
        return (1.0 + self.solo_cs2) / 2.0

    def batch_tokens(self, queued_tokens_per_instance: float) -> float:
        """Tokens in the batch an instance starts with this many tokens waiting for it (the request
        engine takes all it can, up to the budget; at least one prompt)."""
        return min(max(self.budget_tokens, self.mean_new), max(self.mean_new, queued_tokens_per_instance))

    def batch_rate(self, tokens: float) -> tuple[float, float]:
        """(prefill tokens per wall second, kernel ÷ wall) for batches of ``tokens`` tokens."""
        if self.per_token_s <= 0.0 or tokens <= self.mean_new:
            return self.tok_per_s, self.kfrac
        wall_s = self.base_s + self.per_token_s * tokens
        return float(tokens / wall_s), float((self.kernel_base_s + self.kernel_per_token_s * tokens) / wall_s)


def length_mix(load: ServiceLoad, perf: InstancePerf, decode_kv_caps: list[int]) -> LengthMix:
    """The length statistics of ``load`` on a prefill instance of ``perf``; ``decode_kv_caps``: the KV
    capacity (tokens) of each allowed decode shape."""
    mix = _solo_mix(load, perf, decode_kv_caps)
    _fit_batches(mix, load, perf)
    return mix


def _fit_batches(mix: LengthMix, load: ServiceLoad, perf: InstancePerf, sample: int = 2000) -> None:
    """Pack the first ``sample`` prompts of the mix into batches of up to the service's prefill token
    budget, as the request engine does with a long queue, and fit the line through a solo prompt and
    a full batch (wall and kernel time against tokens)."""
    budget = float(load.spec.max_prefill_tokens)
    mix.budget_tokens = budget
    new = mix.new[:sample]
    cached = (load.trace.input_tokens[:sample] - new).astype(np.float64)
    batches: list[tuple[float, float, float]] = []  # (tokens, attention, prefix attention)
    tokens = attn = prefix = 0.0
    for n, c in zip(new, cached, strict=True):
        if tokens and tokens + n > budget:
            batches.append((tokens, attn, prefix))
            tokens = attn = prefix = 0.0
        tokens += n
        attn += n * (c + n)
        prefix += n * c
    if tokens:
        batches.append((tokens, attn, prefix))
    full_tokens = sum(t for t, _, _ in batches) / max(1, len(batches))
    if full_tokens <= mix.mean_new * 1.05 or mix.tok_per_s <= 0:
        return  # the prompts fill a batch alone: batching gains nothing
    full_wall = sum(perf.prefill_time_s(int(t), a, p) for t, a, p in batches) / len(batches)
    full_kernel = sum(perf.prefill_kernel_s(int(t), a, p) for t, a, p in batches) / len(batches)
    solo_wall = mix.mean_new / mix.tok_per_s
    solo_kernel = solo_wall * mix.kfrac
    span = full_tokens - mix.mean_new
    mix.per_token_s = max(0.0, (full_wall - solo_wall) / span)
    mix.base_s = solo_wall - mix.per_token_s * mix.mean_new
    mix.kernel_per_token_s = max(0.0, (full_kernel - solo_kernel) / span)
    mix.kernel_base_s = solo_kernel - mix.kernel_per_token_s * mix.mean_new


def _solo_mix(load: ServiceLoad, perf: InstancePerf, decode_kv_caps: list[int]) -> LengthMix:
    tr = load.trace
    inp = tr.input_tokens.astype(np.float64)
    out = tr.output_tokens.astype(np.float64)
    cached = load.cached_tokens.astype(np.float64)
    new = inp - cached
    pairs = list(zip(new, cached, strict=True))
    solo = np.array([perf.prefill_time_s(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs])
    kern = np.array([perf.prefill_kernel_s(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs])
    flops = sum(perf.prefill_flops(int(n), float(n * (c + n)), float(n * c)) for n, c in pairs[:2000])
    m = np.maximum(out - 1.0, 0.0)
    sum_m = float(m.sum())
    n_over = int(((inp + out) > max(decode_kv_caps)).sum()) if decode_kv_caps and len(inp) else 0
    ctx_member = float((inp * m + m * m / 2.0).sum() / sum_m) if sum_m > 0 else float(inp.mean() if len(inp) else 0)
    n_req = max(1, len(new))
    return LengthMix(
        new=new,
        solo_s=solo,
        tok_per_s=float(new.sum() / solo.sum()) if solo.sum() > 0 else 1.0,
        kfrac=float(kern.sum() / solo.sum()) if solo.sum() > 0 else 0.0,
        flops_per_token=flops / max(1.0, float(new[:2000].sum())),
        mean_new=float(new.mean()) if len(new) else 1.0,
        mean_m=sum_m / n_req,
        mean_m_decoding=sum_m / max(1, int((m > 0).sum())),
        ctx_member=ctx_member,
        resv_per_req=float((inp + out).mean()) if len(inp) else 1.0,
        frac_single=float((m == 0).sum() / n_req),
        steps=m,
        frac_over_kv=n_over / n_req,
        solo_cs2=float(solo.var() / solo.mean() ** 2) if len(solo) and solo.mean() > 0 else 1.0,
    )


def erlang_c(c: int, arrival_rps: float, service_s: float) -> tuple[float, float]:
    """M/M/c: (probability that a request waits, mean wait of those that wait).

    Returns (0, 0) when there is no server or the queue is unstable: the fluid backlog term then
    carries the wait instead.
    """
    if c <= 0 or arrival_rps <= 0 or service_s <= 0:
        return 0.0, 0.0
    a = arrival_rps * service_s
    rho = a / c
    if rho >= 1.0:
        return 0.0, 0.0
    b = 1.0  # Erlang-B by recursion, then Erlang-C
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    pc = b / (1.0 - rho + rho * b)
    return pc, service_s / (c * (1.0 - rho))


def weighted_quantiles(pairs: list[tuple[float, float]], qs: tuple[float, ...]) -> list[float | None]:
    pairs = [(v, w) for v, w in pairs if w > 0 and math.isfinite(v)]
    if not pairs:
        return [None] * len(qs)
    vals = np.array([v for v, _ in pairs])
    wts = np.array([w for _, w in pairs])
    order = np.argsort(vals, kind="stable")
    vals, wts = vals[order], wts[order]
    cum = np.cumsum(wts) / wts.sum()
    return [float(vals[min(len(vals) - 1, int(np.searchsorted(cum, q)))]) for q in qs]


def mixture_quantiles(base: np.ndarray, shifts: list[tuple[float, float]], qs: tuple[float, ...]) -> list[float | None]:
    if len(base) == 0:
        return [None] * len(qs)
    return mixture_quantiles_multi([(base, shifts)], qs)


def mixture_quantiles_multi(
    parts: list[tuple[np.ndarray, list[tuple[float, float]]]], qs: tuple[float, ...]
) -> list[float | None]:
    """Quantiles of a mixture of shifted copies of sorted base samples (weights per shift)."""
    parts = [(b, [(w, c) for w, c in s if c > 0]) for b, s in parts if len(b)]
    parts = [(b, s) for b, s in parts if s]
    if not parts:
        return [None] * len(qs)
    arrays = [(b, np.array([w for w, _ in s]), np.array([c for _, c in s])) for b, s in parts]
    total = sum(float(c.sum()) for _, _, c in arrays)
    lo = min(float(b[0] + w.min()) for b, w, _ in arrays)
    hi = max(float(b[-1] + w.max()) for b, w, _ in arrays)

    def cdf(x: float) -> float:
        acc = 0.0
        for b, w, c in arrays:
            acc += float((np.searchsorted(b, x - w, side="right") * c).sum()) / len(b)
        return acc / total

    out: list[float | None] = []
    for q in qs:
        a, z = lo, hi
        for _ in range(50):
            mid = 0.5 * (a + z)
            if cdf(mid) < q:
                a = mid
            else:
                z = mid
            if z - a < 1e-6 * max(1.0, abs(z)):
                break
        out.append(z)
    return out
