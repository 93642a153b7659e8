"""Policies: pure functions of an explicit context → recommendations and decisions."""
