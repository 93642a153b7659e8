"""The request engine's state: a request, the two instance kinds, one service's state and the mixed
pool's pools and books.

Kept apart from the event logic (:mod:`heteroscale.sim.request_engine`) so each stays readable. A
request carries its phase timestamps (``records.py`` writes them): arrival → prefill queued (routed
to an instance) → prefill start / end → KV transfer start / end → decode admission (its first token)
→ completion. A decode instance's ``members`` heap holds (finishing step, request id, request).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimInstance
from heteroscale.sim.records import ServiceStats

if TYPE_CHECKING:
    from heteroscale.sim.engine import ServiceLoad

_INF = float("inf")
_NAN = float("nan")


class Req:
    __slots__ = (
        "adm_order",
        "arrival",
        "cached",
        "dinst",
        "done_tokens",
        "inp",
        "lent",
        "local",
        "new",
        "out",
        "pinst",
        "preemptions",
        "remaining",
        "rid",
        "sent_s",
        "svc",
        "t_admit",
        "t_pe",
        "t_pq",
        "t_ps",
        "t_xe",
        "t_xs",
    )

    def __init__(self, rid: int, svc: int, arrival: float, inp: int, out: int, cached: int, local: int = -1) -> None:
        self.rid = rid
        self.local = local  # its row in the service's trace (-1: not from a trace)
        self.svc = svc
        self.arrival = arrival
        self.inp = inp
        self.out = out
        self.cached = cached
        self.new = inp - cached
        self.pinst: PrefillInst | DecodeInst | None = None  # where its prompt runs (a decode one when lent)
        self.dinst: DecodeInst | None = None
        self.sent_s = 0.0  # when its KV has left the prefill instance's NIC
        self.done_tokens = 0  # prompt tokens prefilled so far (chunked prefill)
        self.remaining: float = out - 1  # decode steps still to run (kept across a preemption)
        self.adm_order = 0  # admission order on its decode instance (the preemption victim is the latest)
        self.preemptions = 0
        self.lent = False  # mixed pool: its prompt ran on a decode instance, or its decode on a prefill one
        # phase timestamps (NaN: the phase did not happen)
        self.t_pq = _NAN
        self.t_ps = _NAN
        self.t_pe = _NAN
        self.t_xs = _NAN
        self.t_xe = _NAN
        self.t_admit = _NAN


class PrefillInst(SimInstance):
    __slots__ = (
        "acc_cached_tokens",
        "batch",
        "batch_end",
        "batch_kfrac",
        "batch_tokens",
        "busy",
        "in_mixed_pool",
        "killed",
        "killed_at_s",
        "kv_bw",
        "kv_held",
        "nic_free_at",
        "queue",
        "queued_tokens",
        "sec_per_token",
        "shadow",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queue: deque[Req] = deque()
        self.queued_tokens = 0
        self.busy = False
        self.batch: list[Req] = []
        self.batch_end = 0.0
        self.batch_tokens = 0
        self.batch_kfrac = 0.0
        self.nic_free_at = 0.0
        self.kv_bw: dict[DecodeInst, float] = {}  # the cluster's KV bandwidth to each decode instance sent to
        self.killed = False
        self.killed_at_s = _INF
        self.kv_held = 0  # prefilled requests whose KV waits here for a routable decode instance
        self.acc_cached_tokens = 0.0  # prompt tokens served from the prefix cache (acc_tokens: the rest)
        perf: InstancePerf = self.perf
        self.sec_per_token = perf.prefill_time_s(4096, 4096.0 * 4096.0) / 4096.0
        self.shadow: DecodeInst | None = None  # mixed pool: the decodes lent to this instance
        self.in_mixed_pool = False  # mixed pool: moved into it (request_mixed.py), until idle


class DecodeInst(SimInstance):
    __slots__ = (
        "b",
        "cap_tokens",
        "ctx",
        "flops_b",
        "flops_per_context_token",
        "flops_per_seq",
        "host",
        "in_mixed_pool",
        "inbound",
        "killed",
        "killed_at_s",
        "kv_bw",
        "kv_held",
        "lent_batch",
        "lent_busy",
        "lent_queue",
        "lent_tokens",
        "lin_base",
        "lin_per",
        "load_frac",
        "max_batch",
        "members",
        "nic_free_at",
        "owner",
        "per_b",
        "resv",
        "steps",
        "t_last",
        "version",
        "waiting",
    )

    def __init__(self, *args: object, max_batch: int, cap_tokens: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        perf: InstancePerf = self.perf
        self.max_batch = max_batch
        self.cap_tokens = cap_tokens
        lin = [perf.decode_linear(b) if b > 0 else (0.0, 0.0) for b in range(max_batch + 1)]
        self.lin_base = [x[0] for x in lin]
        self.lin_per = [x[1] for x in lin]
        self.host = [perf.decode_host_s(b) for b in range(max_batch + 1)]
        self.flops_per_seq = perf.decode_flops_per_seq  # the perf constants the batch advance reads
        self.flops_per_context_token = perf.decode_attn_flops_per_context_token
        # per batch size, the products the advance would form from an int and a float (the same
        # values; a float-only step runs the interpreter's fast path)
        self.per_b = [per * b for b, per in enumerate(self.lin_per)]
        self.flops_b = [b * self.flops_per_seq for b in range(max_batch + 1)]
        self.members: list[tuple[float, int, Req]] = []
        self.b = 0
        self.ctx = 0.0  # KV tokens the batch holds (prompts plus the tokens generated so far)
        self.resv = 0  # KV tokens reserved (kv_reservation admission: prompt + whole output per member)
        self.load_frac = 1 / (cap_tokens + 1)  # (resv + 1) / (cap + 1), kept with resv: the routing load
        self.steps = 0.0
        self.t_last = 0.0  # the batch's accounting is up to here (later than now while it stalls)
        self.version = 0
        self.waiting: deque[Req] = deque()
        self.inbound = 0
        self.nic_free_at = 0.0  # its own outbound KV (mixed pool: a lent prompt's KV leaving)
        self.kv_bw: dict[DecodeInst, float] = {}  # as a prefill instance's (a lent prompt's KV leaving)
        self.lent_queue: deque[Req] = deque()  # mixed pool: prompts lent to this instance
        self.lent_tokens = 0
        self.lent_busy = False
        self.lent_batch: list[Req] = []
        self.killed = False
        self.killed_at_s = _INF
        self.kv_held = 0  # lent prompts whose KV waits here for a routable decode instance
        self.owner: PrefillInst | None = None  # set on a prefill instance's shadow decode side
        self.in_mixed_pool = False  # mixed pool: moved into it (request_mixed.py), until idle


Inst = PrefillInst | DecodeInst


class Books:
    """The mixed pool's books on one instance (or a prefill instance's decode side), as SplitwiseSim's
    scheduler keeps them: what it placed there at arrival and is not yet in the instance's own state."""

    __slots__ = ("decode_kv", "decodes", "inbound", "outbound", "prompt_kv", "prompt_tokens")

    def __init__(self) -> None:
        self.prompt_tokens = 0  # prompt tokens placed here whose prefill has not ended
        self.prompt_kv = 0  # their KV (prompt + 1 each)
        self.outbound: list[Req] = []  # prompts ended here whose KV has not landed (it is held here)
        self.decodes = 0  # decodes placed here whose prompt has not ended
        self.decode_kv = 0  # their booked KV (prompt + output each)
        self.inbound: list[Req] = []  # decodes whose KV is on its way here


@dataclass(slots=True, eq=False)
class MixedPools:
    """The mixed pool's state (:mod:`heteroscale.sim.request_mixed`) for one service: its pools and
    books as SplitwiseSim's scheduler keeps them, and what it lent."""

    prompt: list[PrefillInst] = field(default_factory=list)
    token: list[DecodeInst] = field(default_factory=list)
    mixed: list[Inst] = field(default_factory=list)
    known: set[Inst] = field(default_factory=set)  # every routable instance, in one pool or another
    books: dict[Inst, Books] = field(default_factory=dict)  # by instance, and by prefill decode side
    prompts_lent: int = 0  # prompts run on a decode instance
    decodes_lent: int = 0  # decodes run on a prefill instance
    colocated: int = 0  # both phases on one instance (no KV transfer)


@dataclass(slots=True, eq=False)
class ServiceState:
    """Everything the request engine keeps per service (one object instead of parallel lists)."""

    load: ServiceLoad
    stats: ServiceStats
    prefill_budget: int  # prompt tokens per prefill batch
    chunk_tokens: int  # 0: whole prompts (the first always gets in); else at most this many a batch
    max_decode_batch: int
    inp: list[int]
    out: list[int]
    cached: list[int]
    done: bytearray  # 1: completed, per request of the trace (a bytearray: one store per completion)
    p_routable: list[PrefillInst] = field(default_factory=list)
    d_routable: list[DecodeInst] = field(default_factory=list)
    p_all: list[PrefillInst] = field(default_factory=list)
    d_all: list[DecodeInst] = field(default_factory=list)
    pending_prefill: deque[Req] = field(default_factory=deque)  # no routable prefill instance yet
    pending_decode: deque[Req] = field(default_factory=deque)  # KV held on a prefill instance
    # queue and running counts summed over the window's samples:
    # [prefill queue, prefill running, decode queue, decode running, samples]
    counts_acc: list[float] = field(default_factory=lambda: [0.0] * 5)
    pools: MixedPools | None = None  # the mixed pool's pools and books (made on first use)
