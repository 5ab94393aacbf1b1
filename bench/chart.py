"""Charts of a benchmark timeline: a self-contained HTML page (inline SVG) and a PNG.

    render(timeline, title, html_path, png_path)

``timeline`` is ``{"t": [second, ...], "panels": [{"title", "unit", "series": {name: [y, ...]}}]}``
(one value per second; ``None`` where a second has no sample). The HTML needs nothing but a
browser; the PNG needs matplotlib (skipped, returning False, when it is not installed).
"""

from __future__ import annotations

import html
import math
from typing import Any

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 900, 260, 70, 170, 30, 35


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = float(10 ** math.floor(math.log10(v)))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def svg_panel(t: list[float], panel: dict[str, Any]) -> str:
    """One line chart as an SVG element (x: seconds, y: the panel's unit)."""
    values = [y for ys in panel["series"].values() for y in ys if y is not None]
    ymax = _nice_max(max(values, default=1.0))
    xmax = max(t[-1] if t else 1.0, 1.0)
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(v: float) -> float:
        return PAD_L + v / xmax * pw

    def y(v: float) -> float:
        return PAD_T + ph - v / ymax * ph

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="11">'),
           (f'<text x="{PAD_L}" y="18" font-size="13" font-weight="bold">'
           f'{html.escape(panel["title"])}</text>'),
           f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for i in range(5):
        v = ymax * i / 4
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/><text x="{PAD_L - 5}" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f'{v:g}</text>')
    for i in range(6):
        v = xmax * i / 5
        out.append(f'<text x="{x(v):.1f}" y="{H - 12}" text-anchor="middle">{v:.0f} s</text>')
    out.append(f'<text x="12" y="{PAD_T + ph / 2}" transform="rotate(-90 12 {PAD_T + ph / 2})" '
               f'text-anchor="middle">{html.escape(panel["unit"])}</text>')
    for i, (name, ys) in enumerate(panel["series"].items()):
        colour = COLOURS[i % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for tv, yv in zip(t, ys, strict=False):
            if yv is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(tv):.1f},{y(yv):.1f}")
        for pts in runs:
            if len(pts) == 1:
                cx, cy = pts[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif pts:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                           f'points="{" ".join(pts)}"/>')
        ly = PAD_T + 14 + 16 * i
        out.append(f'<line x1="{W - PAD_R + 10}" x2="{W - PAD_R + 30}" y1="{ly - 4}" '
                   f'y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>'
                   f'<text x="{W - PAD_R + 35}" y="{ly}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def html_page(timelines: dict[str, dict[str, Any]], title: str, notes: str = "") -> str:
    """A page with every panel of every timeline (one section per run)."""
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title></head><body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>"
             f"<pre>{html.escape(notes)}</pre>")]
    for name, tl in timelines.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.extend(svg_panel(tl["t"], p) for p in tl["panels"])
    parts.append("</body></html>")
    return "\n".join(parts)


def png(timelines: dict[str, dict[str, Any]], title: str, path: str) -> bool:
    """Write the same panels as a PNG with matplotlib; False when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [(name, tl, p) for name, tl in timelines.items() for p in tl["panels"]]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.8 * len(rows)), squeeze=False)
    for ax, (name, tl, p) in zip(axes[:, 0], rows, strict=True):
        for label, ys in p["series"].items():
            ax.plot(tl["t"], [math.nan if v is None else v for v in ys], label=label)
        ax.set_title(f"{name}: {p['title']}", fontsize=10)
        ax.set_ylabel(p["unit"])
        ax.set_xlabel("s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def render(timelines: dict[str, dict[str, Any]], title: str, html_path: str, png_path: str,
           notes: str = "") -> bool:
    """Write the HTML page and the PNG; returns whether the PNG was written."""
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(html_page(timelines, title, notes))
    return png(timelines, title, png_path)
