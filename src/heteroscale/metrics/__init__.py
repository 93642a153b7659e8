"""Metric sources: the MetricSource Protocol and its implementations."""
