"""The controller: the only place that joins metrics, policy, scheduling and actuators."""
