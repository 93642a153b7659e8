"""Experiments over the simulator: pressure tests, the oracle, compare, the paper's studies, tuning."""
