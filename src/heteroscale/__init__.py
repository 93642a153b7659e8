"""HeteroScale: coordinated P/D autoscaling for heterogeneous LLM serving, and its simulator."""

from __future__ import annotations

__version__ = "0.1.0"
