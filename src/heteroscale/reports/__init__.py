"""Summaries, tables, time-series files and (later) plots."""
