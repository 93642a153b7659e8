"""Experiments over the simulator: pressure tests, the lower bound and the ratio-oracle, compare (in parallel),
the paper's studies, tuning."""
