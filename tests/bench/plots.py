"""Plots for docs/BENCHMARKS.md: matplotlib (Agg, no display) figures as PNG bytes.

A benchmark builds its figure with ``figure()``, draws, and puts ``png(fig)`` in its
``Section.images`` under a file name (``bench-<key>-<what>.png``); ``report.write`` writes it
beside the doc, and the section's body links it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def figure(title: str, width: float = 9.0, height: float = 4.0) -> tuple[Figure, object]:
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def sliding_counts(times: Iterable[float], window_s: float, t0: float, t1: float,
                   step_s: float = 0.25) -> tuple[list[float], list[int]]:
    """Calls in the window (t - window_s, t] for t from t0 to t1 every step_s: the curve to
    draw against the rule's N (x in seconds from t0)."""
    ts = sorted(times)
    xs, ys = [], []
    lo = hi = 0
    t = t0
    while t <= t1:
        while hi < len(ts) and ts[hi] <= t:
            hi += 1
        while lo < hi and ts[lo] <= t - window_s:
            lo += 1
        xs.append(t - t0)
        ys.append(hi - lo)
        t += step_s
    return xs, ys
