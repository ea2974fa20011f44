"""Charts as inline SVG, drawn on the server: no script, no library, nothing fetched.

Each function returns one ``<svg>`` element with a ``<title>`` (screen readers) and every text
from the data escaped.

>>> svg = line_chart({"rating": [(0, 10.0), (60, 55.0)]}, title="Rating")
>>> svg.startswith("<svg") and "polyline" in svg and "Rating" in svg
True
>>> "&lt;b&gt;" in bars([("<b>", 0.5)], title="mix")
True
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["PALETTE", "line_chart", "pr_curve", "bars"]

#: Colour-blind-safe (Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _frame(width: int, height: int, title: str, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" class="chart"><title>{escape(title)}</title>{body}</svg>'
    )


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    title: str,
    y_max: float = 100.0,
    y_label: str = "",
    width: int = 580,
    height: int = 200,
) -> str:
    """Lines of ``(time, value)`` points against time (epoch seconds), from 0 to ``y_max``;
    a None value breaks its line."""
    left, right, top, bottom = 34, 178, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [t for points in series.values() for t, v in points if v is not None]
    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#dde1e6"/>']
    for i in range(5):
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff2"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" fill="#5f6b7a">'
            f"{value:g}</text>"
        )
    if not times:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="12" '
            f'fill="#5f6b7a">no history yet</text>'
        )
    else:
        t0, t1 = min(times), max(times)
        span = max(t1 - t0, 1.0)
        for when in (t0, t1):
            x = left + plot_w * (when - t0) / span
            parts.append(
                f'<text x="{x:.1f}" y="{height - 6}" text-anchor="{"start" if when == t0 else "end"}" '
                f'font-size="10" fill="#5f6b7a">{time.strftime("%H:%M:%S", time.gmtime(when))}</text>'
            )
        for n, (name, points) in enumerate(series.items()):
            colour = PALETTE[n % len(PALETTE)]
            runs: list[list[str]] = [[]]
            for t, v in points:
                if v is None:
                    runs.append([])
                    continue
                x = left + plot_w * (t - t0) / span
                y = top + plot_h - plot_h * min(max(v, 0.0), y_max) / y_max
                runs[-1].append(f"{x:.1f},{y:.1f}")
            for run in runs:
                if len(run) == 1:
                    cx, cy = run[0].split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
                elif run:
                    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}"/>')
            last = next((v for _, v in reversed(points) if v is not None), None)
            legend = f"{name} {last:.1f}" if last is not None else name
            parts.append(
                f'<rect x="{left + plot_w + 10}" y="{top + 4 + 16 * n}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{left + plot_w + 24}" y="{top + 13 + 16 * n}" font-size="11">{escape(legend)}</text>'
            )
    if y_label:
        parts.append(f'<text x="4" y="{top + 8}" font-size="10" fill="#5f6b7a">{escape(y_label)}</text>')
    return _frame(width, height, title, "".join(parts))


def pr_curve(
    points: Sequence[Mapping[str, float]],
    thresholds: Mapping[str, float | None],
    *,
    title: str,
    width: int = 420,
    height: int = 320,
) -> str:
    """A precision-recall curve (``points`` of ``threshold``, ``precision``, ``recall``) with the
    point nearest each named threshold marked."""
    left, right, top, bottom = 44, 150, 10, 36
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(p) -> tuple[float, float]:
        return left + plot_w * p["recall"], top + plot_h - plot_h * p["precision"]

    parts = [f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#dde1e6"/>']
    for i in range(5):
        v = i / 4
        parts.append(
            f'<text x="{left - 4}" y="{top + plot_h - plot_h * v + 4:.1f}" text-anchor="end" font-size="10" '
            f'fill="#5f6b7a">{v:g}</text><text x="{left + plot_w * v:.1f}" y="{top + plot_h + 14}" '
            f'text-anchor="middle" font-size="10" fill="#5f6b7a">{v:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" font-size="11">recall</text>'
        f'<text x="10" y="{top + plot_h / 2}" font-size="11" transform="rotate(-90 10 {top + plot_h / 2})" '
        f'text-anchor="middle">precision</text>'
    )
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" font-size="12" '
            f'fill="#5f6b7a">no positives in the window yet</text>'
        )
        return _frame(width, height, title, "".join(parts))
    ordered = sorted(points, key=lambda p: (p["recall"], -p["precision"]))
    parts.append(
        '<polyline fill="none" stroke="#0072B2" stroke-width="2" points="'
        + " ".join("{:.1f},{:.1f}".format(*xy(p)) for p in ordered)
        + '"/>'
    )
    n = 0
    for (name, value), colour in zip(thresholds.items(), PALETTE[1:]):
        if value is None:
            legend = f"{name}: –"
        else:
            nearest = min(points, key=lambda p: abs(p["threshold"] - value))
            x, y = xy(nearest)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" stroke="#fff"><title>'
                f"{escape(name)} {value:.3f}: precision {nearest['precision']:.2f}, recall "
                f"{nearest['recall']:.2f}</title></circle>"
            )
            legend = f"{name} {value:.3f}"
        parts.append(
            f'<circle cx="{left + plot_w + 16}" cy="{top + 9 + 18 * n}" r="5" fill="{colour}"/>'
            f'<text x="{left + plot_w + 26}" y="{top + 13 + 18 * n}" font-size="11">{escape(legend)}</text>'
        )
        n += 1
    return _frame(width, height, title, "".join(parts))


def bars(items: Sequence[tuple[str, float]], *, title: str, width: int = 580) -> str:
    """Horizontal bars of shares in [0, 1], one row per ``(name, share)``."""
    row, label_w = 18, 230
    height = max(row * len(items) + 8, 30)
    plot_w = width - label_w - 60
    parts = []
    if not items:
        parts.append('<text x="8" y="18" font-size="12" fill="#5f6b7a">no live messages yet</text>')
    for i, (name, share) in enumerate(items):
        y = 4 + row * i
        shown = name if len(name) <= 34 else name[:33] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="11">{escape(shown)}'
            f"<title>{escape(name)}</title></text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{max(plot_w * share, 1):.1f}" height="{row - 6}" '
            f'fill="#56B4E9"/><text x="{label_w + plot_w * share + 4:.1f}" y="{y + 12}" font-size="11">'
            f"{100 * share:.1f}%</text>"
        )
    return _frame(width, height, title, "".join(parts))
