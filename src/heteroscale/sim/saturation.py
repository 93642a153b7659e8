"""What each request's work costs at saturation: the least GPU-seconds either engine can spend on it.

For every request of a load and every allowed shape of a role, a lower bound on the busy time an
instance of that shape needs for the request's share of work, from the same performance model
(:class:`~heteroscale.perf.InstancePerf`) both engines run; the cheapest shape per request and role,
weighted by GPUs (GPU-seconds) or by GPUs × relative cost per GPU-hour (cost-seconds).

Prefill. A batch of ``n`` cache-missed tokens and ``a`` attention units takes
``host + allreduce + max(n·c_tok + a·c_attn, weight_read) + n·c_comm ≥ host + allreduce +
n·(c_tok + c_comm) + a·c_attn``. A batch never holds more than ``N = max(token budget, largest
single prompt)`` tokens (a prompt over the budget runs alone), so the fixed part charged to a request
is at least ``(host + allreduce)·new/N``; its GEMM, all-reduce and attention parts are its own.
The fluid engine serves prefill at the solo rate of each request, which is slower still.

Decode. One step of ``b`` sequences whose KV totals ``C`` tokens takes ``base(b) + per·C``, and it
yields ``b`` tokens: charge ``base(b)/b`` plus ``per`` times its own context to each. ``b`` is bounded
by the batch cap and by the KV cache (the ``b`` smallest reservations ``input + output`` must fit, and
the fluid engine's ``capacity / mean reservation``); ``base(b)/b`` falls with ``b``, so the fixed
part is at least ``φ = min(base(B)/B, min_{k<B} base(k)/(k + ½))`` — the ``+ ½`` covers the fluid
engine, which runs a mean batch ``b̄`` at the step time of ``round(b̄)``. A request with ``m = output − 1``
decode steps reads at least ``input + k`` tokens of KV at its step ``k``, so its context part is at
least ``per·(m·input + m(m−1)/2)``. A shape whose KV cache cannot hold ``input + output`` cannot serve
the request (it fails with ``kv-capacity``); a request no decode shape holds is not *servable*.

Cached prefixes: prefill work counts only the cache-missed tokens (``new = input − cached``) and their
attention over ``cached + new``; decode reads the whole context. KV transfer uses NICs, not GPU time,
and cold starts add only cost: neither is counted, which keeps these figures below any run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from heteroscale.domain.hardware import GpuSku, InstanceShape, Role
from heteroscale.domain.service import ServiceSpec
from heteroscale.perf import InstancePerf
from heteroscale.sim.traces import RequestTrace


@dataclass(frozen=True, slots=True)
class RequestCosts:
    """Per request (in trace order): the least GPU-seconds, and cost-weighted GPU-seconds (GPU-seconds
    × relative cost per GPU-hour), its prefill and its decode take at saturation on the cheapest shape.
    Decode costs of requests that are not ``servable`` are 0."""

    prefill_gpu_s: np.ndarray
    decode_gpu_s: np.ndarray
    prefill_cost_s: np.ndarray
    decode_cost_s: np.ndarray
    servable: np.ndarray  # bool: some decode shape's KV cache can hold input + output


def _prefill_s(perf: InstancePerf, new: np.ndarray, attn: np.ndarray, max_tokens: int) -> np.ndarray:
    tokens_per_batch = float(max(max_tokens, int(new.max()) if len(new) else 1, 1))
    fixed_per_token = (perf.prefill_host_overhead_s + perf.allreduce_latency_s) / tokens_per_batch
    # the small-message link rate even for batches past a large-message knee: the least, so still a bound
    per_token = fixed_per_token + perf.prefill_s_per_token + perf.prefill_comm_s_per_token
    return new * per_token + attn * perf.prefill_s_per_attn_unit


def largest_batch(perf: InstancePerf, reservations: np.ndarray, max_batch: int) -> int:
    """The most sequences a decode instance of ``perf`` can run at once on these requests: the batch cap,
    the ``b`` smallest reservations that fit its KV cache, or the fluid engine's capacity ÷ mean."""
    cap = perf.kv_capacity_tokens
    fits = reservations[reservations <= cap]
    if len(fits) == 0:
        return 1
    smallest = int(np.searchsorted(np.cumsum(np.sort(fits)), cap, side="right"))
    by_mean = int(np.ceil(cap / max(1.0, float(reservations.mean()))))
    return max(1, min(max_batch, max(smallest, by_mean)))


def decode_fixed_s_per_token(perf: InstancePerf, batch: int) -> float:
    """φ: the least context-independent step time one decode token can take in a batch of at most
    ``batch`` (see the module doc for the ``+ ½``)."""
    best = perf.decode_linear(batch)[0] / batch
    for k in range(1, batch):
        best = min(best, perf.decode_linear(k)[0] / (k + 0.5))
    return best


def request_costs(
    spec: ServiceSpec,
    trace: RequestTrace,
    cached: np.ndarray,
    perfs: Mapping[InstanceShape, InstancePerf],
    skus: Mapping[str, GpuSku],
) -> RequestCosts:
    """The saturation costs of every request of ``trace`` for ``spec``'s allowed shapes."""
    inp = trace.input_tokens.astype(np.float64)
    out = trace.output_tokens.astype(np.float64)
    new = inp - cached.astype(np.float64)
    attn = new * inp  # new · (cached + new)
    steps = np.maximum(out - 1.0, 0.0)
    context = steps * inp + steps * (steps - 1.0) / 2.0
    reservations = inp + out
    n = len(inp)
    best = {
        (role, weight): np.full(n, np.inf) for role in Role for weight in ("gpu", "cost")
    }  # fmt: skip
    servable = np.zeros(n, dtype=bool)
    for shape in spec.shapes(Role.PREFILL):
        seconds = _prefill_s(perfs[shape], new, attn, spec.max_prefill_tokens)
        _keep_least(best, Role.PREFILL, seconds, shape, skus)
    for shape in spec.shapes(Role.DECODE):
        perf = perfs[shape]
        fits = reservations <= perf.kv_capacity_tokens
        batch = largest_batch(perf, reservations, spec.max_decode_batch)
        seconds = steps * decode_fixed_s_per_token(perf, batch) + context * perf.decode_s_per_context_token
        _keep_least(best, Role.DECODE, np.where(fits, seconds, np.inf), shape, skus)
        servable |= fits

    def finite(a: np.ndarray) -> np.ndarray:
        return np.where(servable, a, 0.0)

    return RequestCosts(
        prefill_gpu_s=best[(Role.PREFILL, "gpu")],
        decode_gpu_s=finite(best[(Role.DECODE, "gpu")]),
        prefill_cost_s=best[(Role.PREFILL, "cost")],
        decode_cost_s=finite(best[(Role.DECODE, "cost")]),
        servable=servable,
    )


def _keep_least(
    best: dict[tuple[Role, str], np.ndarray],
    role: Role,
    seconds: np.ndarray,
    shape: InstanceShape,
    skus: Mapping[str, GpuSku],
) -> None:
    gpu_s = seconds * shape.gpus
    np.minimum(best[(role, "gpu")], gpu_s, out=best[(role, "gpu")])
    np.minimum(best[(role, "cost")], gpu_s * skus[shape.sku].cost_per_gpu_hour, out=best[(role, "cost")])
