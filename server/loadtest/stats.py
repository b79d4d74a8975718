"""Latency samples and their summary: exact percentiles over every sample kept.

A load test of bounded duration keeps every sample (a float per message); exact
percentiles need no sketch, and a p99 that depends on bucket widths would make
two runs hard to compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0.0 when it is empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Milliseconds: p50, p95, p99 and the maximum, over `count` samples."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: list[float]) -> Summary:
        ordered = sorted(seconds)
        ms = [percentile(ordered, f) * 1000 for f in (0.5, 0.95, 0.99, 1.0)]
        return cls(len(ordered), *(round(value, 3) for value in ms))

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}

    def line(self) -> str:
        return f"p50 {self.p50:.2f} ms, p95 {self.p95:.2f}, p99 {self.p99:.2f}, max {self.max:.2f} (n={self.count})"
