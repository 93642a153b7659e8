"""Every policy default that more than one module uses, in one place (HETEROSCALE.md §4, [ours]).

Peers keep their upstream values beside their own code (each names its source); these are ours and
the shared Kubernetes one.
"""

from __future__ import annotations

THETA_OUT = 0.1  # scale out when desired ÷ current > 1 + THETA_OUT (hysteresis)
THETA_IN = 0.1  # scale in when desired ÷ current < 1 − THETA_IN
SCALE_OUT_COOLDOWN_S = 180.0  # after a scale-out, before another scale-out
SCALE_IN_COOLDOWN_S = 600.0  # after a scale-out, before a scale-in
DRAIN_GRACE_S = 600.0  # a draining instance finishes its work within this, else it is killed
KILL_GRACE_S = 30.0  # Kubernetes' default termination grace: peers kill, in-flight requests fail after it
