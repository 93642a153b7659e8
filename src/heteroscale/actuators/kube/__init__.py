"""Kubernetes: API calls with retries (``api``), reading cluster state from plain objects (``state``),
the objects we create (``manifests``), names and labels (``naming``), and the owned-workload actuator
(``owned``)."""
