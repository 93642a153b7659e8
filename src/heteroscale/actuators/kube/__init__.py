"""Kubernetes: API calls with retries and paginated lists (``api``), what a pod says about its instance
(``pods``), reading cluster state from plain objects (``state``), the objects we create (``manifests``),
names and labels (``naming``), and the owned-workload actuator (``owned``)."""
