"""Percentiles and summaries, computed the same way for every target."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (0-100), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    """Return the median, None for no values."""
    return statistics.median(values) if values else None


def ms(seconds: float | None) -> float | None:
    """Convert seconds to milliseconds, rounded to a microsecond."""
    return None if seconds is None else round(seconds * 1000, 3)


def slope_per_minute(times: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of values over times (seconds), per minute."""
    if len(times) < 3:
        return None
    return statistics.linear_regression(times, values).slope * 60
