"""How smpxen summarises a list of measurements, in the report and in `smpxen
bench` alike: median, p99, min and max (one definition, so figures from the two
can be set side by side)."""
from __future__ import annotations

import statistics


def p99(xs) -> float:
    """The 99th percentile, interpolated between the samples (statistics.quantiles,
    inclusive method: never outside [min, max])."""
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def summary(xs, digits: int = 1) -> dict:
    """{samples, median, p99, min, max}; the figures are None without samples."""
    xs = list(xs)
    if not xs:
        return {"samples": 0, "median": None, "p99": None, "min": None, "max": None}
    return {"samples": len(xs), "median": round(statistics.median(xs), digits),
            "p99": round(p99(xs), digits), "min": round(min(xs), digits), "max": round(max(xs), digits)}
