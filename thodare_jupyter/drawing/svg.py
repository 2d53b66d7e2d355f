"""A workflow DAG as a standalone SVG, coloured by run status (no graphviz, no browser).

This is the picture shown where no widget front end runs (nbconvert, GitHub,
nbval). It is deterministic: the same workflow and statuses give the same
bytes (no timestamps, random ids or ``url(#id)`` references), so nbval can
compare it. Only block ids, connector types, branch handles and statuses are
drawn: never params, so a hidden param's value cannot leak into a notebook.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from ..wire import TERMINAL_STATUSES, SerializedWorkflow
from .layout import TRIGGER, Layout, clip, layout
from .palette import DASHED, STATUS_STYLE, style
from .progress import Progress

DIMMED = "0.45"
"""Opacity of a disabled block."""
FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
HEADER_H, LEGEND_H, MIN_W = 28, 24, 240
CHAR_W_11 = 6.7
"""Width of a character of the 11px monospace font (the type line), to fit it."""
FAILED_INK = "#b71c1c"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    """Escaped for XML text and attributes; characters XML 1.0 forbids become U+FFFD."""
    return escape(_NOT_XML.sub("\ufffd", value), {'"': "&quot;", "'": "&#39;"})


def _attrs(**values: Any) -> str:
    """`` key="value"`` pairs (``_`` in a name becomes ``-``); ``None`` values are left out."""
    return "".join(
        f' {k.replace("_", "-")}="{_text(str(v))}"' for k, v in values.items() if v is not None
    )


def _polyline(points: tuple[tuple[int, int], ...]) -> str:
    return "M" + " L".join(f"{x} {y}" for x, y in points)


def step_status(run_status: str, stored: str) -> str:
    """A step's status as shown: once its run has ended nothing is still going, so a
    step stored as running or waiting was cut off (``canceled``) and one that never
    started was never reached (``not run``)."""
    if run_status in TERMINAL_STATUSES and stored in ("pending", "running", "waiting", "paused"):
        return "not run" if stored == "pending" else "canceled"
    return stored


def run_statuses(
    workflow: SerializedWorkflow, run_status: str, steps: Mapping[str, str]
) -> dict[str, str]:
    """Each block's status in a run, as the DAG, the widget and the panel show it: the
    trigger ``completed``, steps as stored (``steps``: status by block id), a block
    with no step ``pending``, all seen through :func:`step_status`."""
    statuses = {b.id: "completed" for b in workflow.blocks if b.type == TRIGGER}
    statuses.update(steps)
    return {b.id: step_status(run_status, statuses.get(b.id, "pending")) for b in workflow.blocks}


def render_svg(
    workflow: SerializedWorkflow | Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    *,
    title: str | None = None,
    progress: Mapping[str, Progress] | None = None,
) -> str:
    """The workflow drawn left to right as a standalone ``<svg>`` document (a string).

    Args:
        workflow: The workflow (a :class:`SerializedWorkflow` or its JSON dict).
        statuses: Step status by block id (``pending``, ``running``, ``waiting``,
            ``completed``, ``failed``, ``skipped``, ``canceled``), e.g. from
            ``handle.describe().steps``; blocks without one are ``pending``. When
            given, a legend of the statuses present is drawn.
        title: A heading; defaults to the workflow's name (none when it has none).
        progress: A ``for_each`` step's items by block id (:func:`.for_each_progress`):
            drawn as ``k/N`` (and ``f failed``, in red) at the end of its type line,
            the type cut to leave it room (left out when under 4 characters would fit).

    Returns:
        SVG markup with ``width``, ``height`` and ``viewBox`` set, ``role="img"``
        and an ``aria-label`` summary; each block is a ``<g>`` carrying
        ``data-block-id`` and ``data-status``.
    """
    wf = (
        workflow
        if isinstance(workflow, SerializedWorkflow)
        else SerializedWorkflow.model_validate(workflow)
    )
    lay = layout(wf)
    status = {n.id: (statuses or {}).get(n.id, "pending") for n in lay.nodes}
    heading = title if title is not None else wf.name
    top = HEADER_H if heading else 0
    width = max(lay.width, MIN_W)
    counts = Counter(status.values())
    present = [s for s in STATUS_STYLE if s in counts] + sorted(set(counts) - set(STATUS_STYLE))
    legend = _legend(present, counts, width) if statuses is not None else []
    height = top + lay.height + LEGEND_H * len(legend)
    summary = _summary(wf, lay, heading, counts, present if statuses is not None else None)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg"{_attrs(width=width, height=height)}'
        f"{_attrs(viewBox=f'0 0 {width} {height}', role='img')}"
        f"{_attrs(aria_label=summary)}"
        f"{_attrs(font_family=FONT, font_size=12)}>",
        f"<title>{_text(heading or 'workflow')}</title>",
    ]
    if heading:
        shown = clip(heading, max((width - 48) // 9, 8))  # 14px monospace: ~8.4px a character
        out.append(f'<text x="24" y="20" font-size="14" font-weight="bold">{_text(shown)}</text>')
    out.append(f'<g class="thodare-dag"{_attrs(transform=f"translate(0,{top})")}>')
    out += _edges(lay)
    out += _nodes(lay, status, progress or {})
    out.append("</g>")
    for row, items in enumerate(legend):
        y = top + lay.height + row * LEGEND_H
        out.append(f'<g class="thodare-legend"{_attrs(transform=f"translate(0,{y})")}>')
        out += items
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _summary(
    wf: SerializedWorkflow,
    lay: Layout,
    heading: str | None,
    counts: Counter[str],
    present: list[str] | None,
) -> str:
    """The aria-label: name, size and (for a run) how many steps are in each status."""
    parts = [f"Workflow {heading or wf.name or '(unnamed)'}: {len(lay.nodes)} blocks, "
             f"{len(lay.edges)} connections"]  # fmt: skip
    if disabled := sum(n.disabled for n in lay.nodes):
        parts.append(f"{disabled} disabled")
    if present is not None:
        parts.append(", ".join(f"{counts[s]} {s}" for s in present))
    return "; ".join(parts)


def _edges(lay: Layout) -> list[str]:
    """Each connection: a polyline, an arrowhead drawn as a path, its handle label."""
    out = []
    for e in lay.edges:
        (x, y), attrs = e.points[-1], _attrs(data_source=e.source, data_target=e.target)
        out.append(f'<g class="thodare-edge"{attrs}{_attrs(data_handle=e.label)}>')
        out.append(f'<path d="{_polyline(e.points)}" fill="none" stroke="#757575"/>')
        out.append(f'<path d="M{x} {y} L{x - 8} {y - 4} L{x - 8} {y + 4} Z" fill="#757575"/>')
        if e.label is not None and e.label_at is not None:
            lx, ly = e.label_at
            out.append(
                f'<text x="{lx}" y="{ly}" font-size="10" fill="#424242">{_text(e.label)}</text>'
            )
        out.append("</g>")
    return out


def _nodes(lay: Layout, status: Mapping[str, str], progress: Mapping[str, Progress]) -> list[str]:
    """Each block: a rounded box in its status colours, its id and type (and a
    ``for_each`` step's progress, the type cut to leave it room), a tooltip."""
    out = []
    for n in lay.nodes:
        s = status[n.id]
        fill, stroke, ink = style(s)
        tip = f"{n.id} ({n.type}): {s}" + (", disabled" if n.disabled else "")
        out.append(
            f'<g class="thodare-node"{_attrs(data_block_id=n.id, data_status=s)}'
            f"{_attrs(data_disabled='true' if n.disabled else None)}"
            f"{_attrs(opacity=DIMMED if n.disabled else None)}"
            f"{_attrs(transform=f'translate({n.x},{n.y})')}>"
        )
        out.append(f"<title>{_text(tip)}</title>")
        dash = "4 3" if s in DASHED else None
        out.append(
            f'<rect rx="8" ry="8"{_attrs(width=n.width, height=n.height, fill=fill)}'
            f"{_attrs(stroke=stroke, stroke_dasharray=dash)}/>"
        )
        out.append(
            f'<text x="10" y="20" font-weight="bold"{_attrs(fill=ink)}>{_text(n.label)}</text>'
        )
        type_label, done = n.type_label, progress.get(n.id)
        if done is not None:
            room = int((n.width - 20) / CHAR_W_11) - len(done.label) - 1
            type_label = clip(type_label, room) if room >= 4 else ""  # "ab…" at least
            failed = f" · {done.failed} failed" if done.failed else ""
            out.append(
                f'<text class="thodare-node-progress" x="{n.width - 10}" y="38" font-size="11"'
                f' text-anchor="end"{_attrs(fill=ink)}>{done.ended}/{done.total}'
                + (f'<tspan fill="{FAILED_INK}">{failed}</tspan>' if failed else "")
                + "</text>"
            )
        out.append(
            f'<text x="10" y="38" font-size="11"{_attrs(fill=ink)}>{_text(type_label)}</text>'
        )
        out.append("</g>")
    return out


def _legend(present: list[str], counts: Counter[str], width: int) -> list[list[str]]:
    """Swatch-and-label items for each status present, flowed into rows of ``width``."""
    rows: list[list[str]] = [[]]
    x = 24
    for s in present:
        label = clip(f"{s} ({counts[s]})", 24)
        step = 12 + 6 + 7 * len(label) + 18
        if x + step > width and rows[-1]:
            rows.append([])
            x = 24
        fill, stroke, _ = style(s)
        dash = "3 2" if s in DASHED else None
        rows[-1].append(
            f'<rect x="{x}" y="4" width="12" height="12" rx="2"{_attrs(fill=fill, stroke=stroke)}'
            f"{_attrs(stroke_dasharray=dash)}/>"
            f'<text x="{x + 18}" y="14" font-size="11"{_attrs(data_status=s)}>{_text(label)}</text>'
        )
        x += step
    return rows if rows[0] else []
