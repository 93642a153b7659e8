"""Actuators and cluster-state sources (simulated, Kubernetes, advisory)."""
