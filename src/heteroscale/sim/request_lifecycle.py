"""Instance lifecycle in the request engine: launch, Ready, discovery, drain and kill (see
:mod:`heteroscale.sim.request_engine` for what scale-in does to in-flight work)."""

from __future__ import annotations

from collections import deque

from heteroscale.domain.hardware import InstanceShape, Role
from heteroscale.domain.state import Lifecycle, ScaleInMode
from heteroscale.perf import InstancePerf
from heteroscale.sim.cluster import SimInstance
from heteroscale.sim.records import FailureCause
from heteroscale.sim.request_decode import EV_DRAIN_DEADLINE, EV_READY, DecodeSide
from heteroscale.sim.request_model import DecodeInst, PrefillInst, Req


class InstanceLifecycle(DecodeSide):
    perfs: dict[tuple[int, InstanceShape], InstancePerf]

    def launch(self, svc: int, shape: InstanceShape, dg: str, node: str, now_s: float, warm: bool) -> str:
        cluster = self.cluster
        cluster.reserve(node, shape.gpus)
        perf = self.perfs[(svc, shape)]
        sku = cluster.skus[shape.sku]
        nic = sku.nic_gbit_per_gpu * 1e9 / 8.0 * shape.gpus
        inst_id = cluster.next_id(svc, shape.role)
        path = cluster.node_path[node]
        sv = self.services[svc]
        inst: PrefillInst | DecodeInst
        if shape.role is Role.PREFILL:
            inst = PrefillInst(inst_id, svc, shape, dg, node, path, perf, nic, now_s)
            sv.p_all.append(inst)
        else:
            inst = DecodeInst(
                inst_id,
                svc,
                shape,
                dg,
                node,
                path,
                perf,
                nic,
                now_s,
                max_batch=sv.max_decode_batch,
                cap_tokens=self.settings.kv_capacity_for(perf.kv_bytes_per_token, perf.kv_capacity_tokens),
            )
            inst.t_last = now_s
            sv.d_all.append(inst)
        cluster.add(inst)
        if warm:
            self._ready(inst, now_s)
        else:
            self._push(now_s + sv.load.cold_start_s, EV_READY, inst)
        return inst_id

    def _ready(self, inst: SimInstance, now_s: float) -> None:
        if inst.lifecycle is not Lifecycle.STARTING:
            return
        inst.lifecycle = Lifecycle.READY
        inst.ready_at_s = now_s
        inst.in_discovery = True
        sv = self.services[inst.svc]
        if isinstance(inst, PrefillInst):
            sv.p_routable.append(inst)
        elif isinstance(inst, DecodeInst):
            inst.t_last = now_s
            sv.d_routable.append(inst)
        self._route_pending(inst, now_s)

    def _route_pending(self, inst: SimInstance, now_s: float) -> None:
        """Route the requests that waited for an instance of ``inst``'s role, now routable."""
        sv = self.services[inst.svc]
        if isinstance(inst, PrefillInst):
            pend_p = sv.pending_prefill
            sv.pending_prefill = deque()
            for req in pend_p:
                self._route_prefill(req, now_s)
        elif isinstance(inst, DecodeInst):
            pend_d = sv.pending_decode
            sv.pending_decode = deque()
            for req in pend_d:
                p = req.pinst
                assert p is not None
                p.kv_held -= 1
                self._start_transfer(req, now_s)

    def set_discovery(self, inst_id: str, in_discovery: bool) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle is not Lifecycle.READY or inst.in_discovery == in_discovery:
            return
        inst.in_discovery = in_discovery
        sv = self.services[inst.svc]
        lst: list[PrefillInst] | list[DecodeInst] = sv.p_routable if isinstance(inst, PrefillInst) else sv.d_routable
        if in_discovery:
            lst.append(inst)  # type: ignore[arg-type]
            self._route_pending(inst, self.now_s)
        else:
            lst.remove(inst)  # type: ignore[arg-type]

    def remove(self, inst_id: str, mode: ScaleInMode, grace_s: float, now_s: float) -> None:
        inst = self.cluster.instances[inst_id]
        if inst.lifecycle in (Lifecycle.GONE, Lifecycle.DRAINING):
            if mode is ScaleInMode.KILL and inst.lifecycle is Lifecycle.DRAINING:
                self._kill(inst, now_s)
            return
        if inst.in_discovery:
            self.set_discovery(inst_id, False)
        if inst.lifecycle is Lifecycle.STARTING or (mode is ScaleInMode.KILL and grace_s <= 0.0):
            self._kill(inst, now_s)
            return
        # DRAIN: gone once empty, killed at the deadline. KILL with a grace period (a peer's SIGTERM then
        # SIGKILL): the same — no new work, in-flight work that outlives the grace fails.
        inst.lifecycle = Lifecycle.DRAINING
        if not self._maybe_gone(inst, now_s):
            self._push(now_s + grace_s, EV_DRAIN_DEADLINE, inst)

    def _maybe_gone(self, inst: SimInstance, now_s: float) -> bool:
        if inst.lifecycle is not Lifecycle.DRAINING:
            return False
        sv = self.services[inst.svc]
        if isinstance(inst, PrefillInst):
            if inst.busy or inst.queue or inst.kv_held or inst.nic_free_at > now_s + 1e-12:
                return False
            sh = inst.shadow
            if sh is not None and (sh.b or sh.waiting or sh.inbound):
                return False
            sv.p_all.remove(inst)
        elif isinstance(inst, DecodeInst):
            if inst.b or inst.waiting or inst.inbound or inst.lent_busy or inst.lent_queue:
                return False
            if inst.kv_held or inst.nic_free_at > now_s + 1e-12:
                return False
            self._advance(inst, now_s)
            sv.d_all.remove(inst)
        self.cluster.mark_gone(inst, now_s)
        return True

    def _kill(self, inst: SimInstance, now_s: float) -> None:
        sv = self.services[inst.svc]
        failed: list[Req] = []
        if isinstance(inst, PrefillInst):
            failed.extend(inst.queue)
            failed.extend(inst.batch)
            inst.queue.clear()
            inst.batch = []
            inst.busy = False
            if inst.shadow is not None:
                failed.extend(self._clear_decode(inst.shadow, now_s))
                inst.shadow.lifecycle = Lifecycle.GONE
        elif isinstance(inst, DecodeInst):
            failed.extend(self._clear_decode(inst, now_s))
            failed.extend(inst.lent_queue)
            failed.extend(inst.lent_batch)
            inst.lent_queue.clear()
            inst.lent_batch = []
            inst.lent_busy = False
        if isinstance(inst, PrefillInst | DecodeInst):
            inst.killed = True
            inst.killed_at_s = now_s
            if inst.kv_held:  # its KV cache dies with it
                pend = sv.pending_decode
                failed.extend(r for r in pend if r.pinst is inst)
                sv.pending_decode = deque(r for r in pend if r.pinst is not inst)
                inst.kv_held = 0
        if isinstance(inst, PrefillInst):
            if inst in sv.p_routable:
                sv.p_routable.remove(inst)
            sv.p_all.remove(inst)
        elif isinstance(inst, DecodeInst):
            if inst in sv.d_routable:
                sv.d_routable.remove(inst)
            sv.d_all.remove(inst)
        for req in failed:
            self._fail(req, now_s, FailureCause.SCALE_IN)
        self.cluster.mark_gone(inst, now_s)

    def _clear_decode(self, d: DecodeInst, now_s: float) -> list[Req]:
        self._advance(d, now_s)
        lost = [m[2] for m in d.members]
        lost.extend(d.waiting)
        d.members = []
        d.waiting.clear()
        d.b = 0
        d.version += 1
        return lost
