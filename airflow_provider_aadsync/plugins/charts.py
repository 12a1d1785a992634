"""Small inline SVG bar charts for the runs page (no JavaScript library, no CDN: the pages work offline)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT, MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 900, 170, 56, 34, 18


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or float(value).is_integer() else f"{value:,.1f}"


def bar_chart(points: Sequence[dict[str, Any]], key: str, *, title: str, unit: str = "", css_class: str = "bar") -> str:
    """One bar per point (a cycle) of ``point[key]``, labelled with the cycle's start; a ``<title>`` per bar gives
    the exact value on hover. Failed cycles get the ``failed`` class."""
    values = [float(point.get(key) or 0) for point in points]
    top = max(values, default=0) or 1.0
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 10, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{MARGIN_LEFT}" y="12" class="chart-title">{escape(title)}</text>',
        f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" text-anchor="end" class="axis">{_number(top)}{unit}</text>',
        f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + plot_h}" text-anchor="end" class="axis">0</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{WIDTH - 10}" y2="{MARGIN_TOP + plot_h}" '
        'class="axis-line"/>',
    ]
    if not points:
        parts.append(f'<text x="{MARGIN_LEFT + 10}" y="{MARGIN_TOP + plot_h // 2}" class="axis">no cycles</text>')
    step = plot_w / max(len(points), 1)
    width = min(max(1.0, step * 0.8), 48.0)  # a few cycles: narrow bars, not one block
    label_every = max(1, len(points) // 8)
    for index, (point, value) in enumerate(zip(points, values, strict=True)):
        height = plot_h * value / top
        x = MARGIN_LEFT + index * step + (step - width) / 2
        y = MARGIN_TOP + plot_h - height
        kind = css_class + (" failed" if point.get("result") not in (None, "success") else "")
        started = str(point.get("started_at") or "")[:16].replace("T", " ")
        tip = f"{started} UTC: {_number(value)}{unit} (runs {', '.join(map(str, point.get('run_ids', [])))})"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{max(height, 0.5):.1f}" class="{kind}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if index % label_every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 18}" class="axis">{escape(started[5:] if started else "")}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
