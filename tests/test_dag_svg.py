"""The static DAG picture: the layered layout and the SVG drawn from it (drawing.layout, .svg).

The SVG is what nbconvert, GitHub and nbval show instead of the widget, so it
must be well-formed, deterministic, escape every user string, never carry a
param value (hidden ones above all), and colour each block by its run status.
"""

from __future__ import annotations

import base64
import json
import random
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thodare_jupyter import Hidden, SerializedWorkflow, define_connector, define_workflow
from thodare_jupyter.drawing.layout import COL_GAP, MARGIN, NODE_W, TRIGGER_W, layout
from thodare_jupyter.drawing.palette import STATUS_STYLE
from thodare_jupyter.drawing.svg import render_svg, run_statuses, step_status
from thodare_jupyter.wire import RUN_STATUSES

NS = "{http://www.w3.org/2000/svg}"
FILLS = {  # the palette dag.js uses too
    "pending": "#e0e0e0", "running": "#90caf9", "waiting": "#ffcc80", "completed": "#a5d6a7",
    "failed": "#ef9a9a", "skipped": "#f5f5f5", "canceled": "#9e9e9e",
}  # fmt: skip
HOSTILE = "<script>&\"'"


def wf(
    blocks: list[Any], conns: list[tuple[str, str, str | None]], **meta: Any
) -> SerializedWorkflow:
    """A workflow from ``[(id, type) | block dict]`` and ``[(source, target, handle)]``."""
    return SerializedWorkflow.model_validate({
        "metadata": meta or None,
        "blocks": [b if isinstance(b, dict) else {"id": b[0], "type": b[1]} for b in blocks],
        "connections": [{"source": s, "target": t, **({"sourceHandle": h} if h else {})}
                        for s, t, h in conns],
    })  # fmt: skip


def branchy(n: int, seed: int = 7) -> SerializedWorkflow:
    """``n`` blocks, each fed by 1-3 of the previous 12, a fifth of the edges conditional."""
    rnd = random.Random(seed)
    conns = []
    for i in range(1, n):
        for p in rnd.sample(range(max(0, i - 12), i), k=min(i, rnd.choice([1, 1, 2, 3]))):
            handle = rnd.choice(["true", "false"]) if rnd.random() < 0.2 else None
            conns.append((f"b{p:03d}", f"b{i:03d}", handle))
    return wf([(f"b{i:03d}", "transform") for i in range(n)], conns)


def diamond() -> SerializedWorkflow:
    return wf([("a", "t"), ("b", "t"), ("c", "t"), ("d", "t")],
              [("a", "b", None), ("a", "c", None), ("b", "d", None), ("c", "d", None)])  # fmt: skip


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag == f"{NS}svg"
    return root


def nodes(root: ET.Element) -> dict[str, ET.Element]:
    found = root.findall(f".//{NS}g[@data-block-id]")
    by_id = {g.get("data-block-id"): g for g in found}
    assert len(by_id) == len(found), "one <g> per block"
    return by_id  # type: ignore[return-value]


def edges(root: ET.Element) -> list[ET.Element]:
    return root.findall(f".//{NS}g[@class='thodare-edge']")


def test_one_group_per_block_coloured_by_status_and_sized_to_scale() -> None:
    ids = [f"s_{s}" for s in FILLS]
    w = wf(
        [(i, "transform") for i in [*ids, "unstarted"]],
        [(a, b, None) for a, b in zip(ids, [*ids[1:], "unstarted"], strict=True)],
        name="run",
    )
    root = parse(render_svg(w, {i: i[2:] for i in ids}))
    by_id = nodes(root)
    assert set(by_id) == {*ids, "unstarted"}
    for i in ids:
        g, status = by_id[i], i[2:]
        rect = g.find(f"{NS}rect")
        assert g.get("data-status") == status and rect is not None
        assert rect.get("fill") == FILLS[status]
        assert (rect.get("stroke-dasharray") is not None) == (status == "skipped")
    assert by_id["unstarted"].get("data-status") == "pending"  # no status yet → pending
    width, height = int(root.get("width", 0)), int(root.get("height", 0))
    assert root.get("viewBox") == f"0 0 {width} {height}" and width > 8 * 168
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert "Workflow run: 8 blocks, 7 connections" in label and "2 pending" in label


def test_legend_lists_only_the_statuses_present() -> None:
    w = diamond()
    root = parse(render_svg(w, {"a": "completed", "b": "failed", "c": "skipped"}))
    shown = [t.get("data-status") for t in root.findall(f".//{NS}g[@class='thodare-legend']/*")
             if t.get("data-status")]  # fmt: skip
    assert shown == ["pending", "completed", "failed", "skipped"]
    assert "thodare-legend" not in render_svg(w)  # a definition (no statuses) has no legend


def test_edges_match_connections_and_conditional_edges_carry_their_handle() -> None:
    w = wf([("start", "trigger_webhook"), ("check", "condition"), ("yes", "http"),
            ("no", "transform"), ("oops", "slack")],
           [("start", "check", None), ("check", "yes", "true"), ("check", "no", "false"),
            ("yes", "oops", "error")])  # fmt: skip
    drawn = edges(parse(render_svg(w)))
    assert len(drawn) == len(w.connections)
    got = {(e.get("data-source"), e.get("data-target"), e.get("data-handle")) for e in drawn}
    assert got == {(c.source, c.target, c.source_handle) for c in w.connections}
    labels = {e.get("data-target"): [t.text for t in e.findall(f"{NS}text")] for e in drawn}
    assert labels == {"check": [], "yes": ["true"], "no": ["false"], "oops": ["error"]}


def test_every_edge_goes_left_to_right_and_long_edges_avoid_boxes() -> None:
    for w in (diamond(), branchy(120)):
        lay = layout(w)
        box = {n.id: n for n in lay.nodes}
        assert len(lay.edges) == len(w.connections)
        for e in lay.edges:
            s, t = box[e.source], box[e.target]
            assert t.layer > s.layer and t.x > s.x + s.width
            xs = [p[0] for p in e.points]
            assert xs == sorted(xs), e
            assert e.points[0][0] == s.x + s.width and s.y < e.points[0][1] < s.y + s.height
            assert e.points[-1][0] == t.x and t.y < e.points[-1][1] < t.y + t.height
    skip = layout(wf([("a", "t"), ("b", "t"), ("c", "t")],
                     [("a", "b", None), ("b", "c", None), ("a", "c", None)]))  # fmt: skip
    b = next(n for n in skip.nodes if n.id == "b")
    long = next(e for e in skip.edges if (e.source, e.target) == ("a", "c"))
    inside = [y for x, y in long.points if b.x <= x <= b.x + b.width]
    assert inside and all(not b.y <= y <= b.y + b.height for y in inside), long.points


def test_crossing_reduction_on_known_graphs() -> None:
    assert layout(diamond()).crossings == 0
    # Alphabetical order [a, b] / [x, y] crosses a→y with b→x once; a sweep untangles it.
    crossed = layout(wf([("a", "t"), ("b", "t"), ("x", "t"), ("y", "t")],
                        [("a", "y", None), ("b", "x", None)]))  # fmt: skip
    y = {n.id: n.y for n in crossed.nodes}
    assert crossed.crossings == 0 and (y["a"] < y["b"]) == (y["y"] < y["x"])
    assert layout(branchy(60)).crossings < 200  # the sweeps at work: 387 in the initial order


def test_render_is_deterministic() -> None:
    statuses = {"b000": "completed", "b001": "running", "b002": "failed"}
    first = render_svg(branchy(80), statuses, title="t")
    assert first == render_svg(branchy(80), dict(reversed(statuses.items())), title="t")
    assert render_svg(diamond().to_dict()) == render_svg(diamond())
    assert ' id="' not in first and "url(#" not in first  # nothing to collide across outputs


def test_user_strings_are_escaped() -> None:
    w = wf([("ok", "t"), (HOSTILE, "</text>&amp;"), ("ctl\x1bid", "t")],
           [("ok", HOSTILE, "<b>"), (HOSTILE, "ctl\x1bid", None)], name="<i>&\"'")  # fmt: skip
    svg = render_svg(w, {HOSTILE: "<bad status>"}, title=None)
    root = parse(svg)
    assert "<script>" not in svg and "<b>" not in svg and "<bad" not in svg
    by_id = nodes(root)
    assert HOSTILE in by_id and by_id[HOSTILE].get("data-status") == "<bad status>"
    texts = [t.text for t in by_id[HOSTILE].iter(f"{NS}text")]
    assert texts == [HOSTILE, "</text>&amp;"]
    assert {t.text for t in root.iter(f"{NS}text")} >= {"<b>", "<i>&\"'"}
    assert root.get("aria-label", "").startswith("Workflow <i>&\"'")
    assert "ctl\ufffdid" in by_id  # a character XML forbids becomes U+FFFD, still well-formed


def test_long_ids_are_clipped_with_the_full_id_in_the_tooltip() -> None:
    long_id = "fetch_the_customer_record_from_the_crm_and_enrich_it"
    g = nodes(parse(render_svg(wf([(long_id, "http")], []))))[long_id]
    shown = g.find(f"{NS}text")
    tip = g.find(f"{NS}title")
    assert shown is not None and tip is not None and tip.text is not None
    assert shown.text == long_id[:19] + "…"
    assert long_id in tip.text


class SlackParams(BaseModel):
    channel: str
    text: str
    access_token: Hidden[str]


class SlackOut(BaseModel):
    ok: bool


def test_param_values_never_reach_the_picture() -> None:
    slack = define_connector(type="slack-post", params=SlackParams, outputs=SlackOut,
                             run=lambda p, ctx: SlackOut(ok=True))  # fmt: skip
    assert slack.hidden_params == {"access_token"}
    w = (define_workflow("secretive")
         .step("say", slack, {"channel": "#visible-channel", "text": "plain-text-value",
                              "access_token": "xoxb-TOP-SECRET-42"})
         .build())  # fmt: skip
    svg = render_svg(w, {"say": "failed"})
    drawn = json.dumps(layout(w).to_dict())
    for value in ("xoxb-TOP-SECRET-42", "#visible-channel", "plain-text-value", "access_token"):
        assert value not in svg and value not in drawn
    assert "say" in nodes(parse(svg))


def test_disabled_blocks_are_dimmed() -> None:
    w = wf([("a", "t"), {"id": "off", "type": "http", "enabled": False}, ("c", "t")],
           [("a", "off", None), ("a", "c", None)])  # fmt: skip
    root = parse(render_svg(w))
    by_id = nodes(root)
    assert by_id["off"].get("opacity") == "0.45" and by_id["off"].get("data-disabled") == "true"
    assert all(by_id[i].get("opacity") is None for i in ("a", "c"))
    assert len(edges(root)) == 2
    assert "1 disabled" in root.get("aria-label", "")
    assert [n.disabled for n in layout(w).nodes if n.id == "off"] == [True]


def test_200_blocks_render() -> None:
    w = branchy(200)
    root = parse(render_svg(w, {f"b{i:03d}": "completed" for i in range(0, 200, 3)}))
    assert len(nodes(root)) == 200 and len(edges(root)) == len(w.connections)


def test_invalid_workflows_still_draw() -> None:
    w = wf([("a", "t"), ("b", "t")], [("a", "b", None), ("b", "a", None), ("a", "ghost", None)])
    lay = layout(w)
    back = next(e for e in lay.edges if e.source == "b")
    assert len(lay.edges) == 2 and min(y for _, y in back.points) == MARGIN // 2  # over the top
    assert len(edges(parse(render_svg(w)))) == 2
    assert len(nodes(parse(render_svg(wf([], []))))) == 0


def test_layout_data_is_json_for_the_front_end() -> None:
    data = json.loads(json.dumps(layout(diamond()).to_dict()))
    assert {"width", "height", "nodes", "edges", "crossings"} <= set(data)
    assert {"id", "label", "type", "x", "y", "width", "height", "disabled"} <= set(data["nodes"][0])
    assert all(len(p) == 2 for e in data["edges"] for p in e["points"])


# ── one palette; statuses as an ended run shows them; the trigger as an input marker ──

PALETTE_TS = Path(__file__).resolve().parents[1] / "labextension" / "src" / "palette.ts"
TS_ROW = re.compile(
    r"^\s*'?([a-z ]+)'?: \['(#[0-9a-f]{6})', '(#[0-9a-f]{6})', '(#[0-9a-f]{6})'\],?$"
)


def test_the_panel_palette_is_the_python_palette_and_covers_every_run_status() -> None:
    """labextension/src/palette.ts holds exactly drawing/palette.py's table."""
    rows = [m.groups() for line in PALETTE_TS.read_text().splitlines() if (m := TS_ROW.match(line))]
    assert {k: (f, s, i) for k, f, s, i in rows} == STATUS_STYLE
    assert len(rows) == len(STATUS_STYLE)  # no key twice
    assert set(RUN_STATUSES) <= set(STATUS_STYLE)
    assert {s: STATUS_STYLE[s][0] for s in FILLS} == FILLS


def test_an_ended_run_has_no_step_still_going() -> None:
    """Failed or canceled: running/waiting steps are canceled, unreached blocks not run."""
    blocks = [("__trigger__", "trigger_webhook"), ("a", "t"), ("b", "t"), ("c", "t"), ("d", "t")]
    w = wf(blocks, [("__trigger__", "a", None), ("a", "b", None), ("a", "c", None),
                    ("b", "d", None)])  # fmt: skip
    steps = {"a": "completed", "b": "failed", "c": "waiting"}
    assert run_statuses(w, "failed", steps) == {
        "__trigger__": "completed", "a": "completed", "b": "failed", "c": "canceled",
        "d": "not run"}  # fmt: skip
    assert run_statuses(w, "running", steps)["c"] == "waiting"
    assert run_statuses(w, "running", steps)["d"] == "pending"
    assert step_status("canceled", "running") == "canceled"
    assert step_status("completed", "skipped") == "skipped"
    svg = parse(render_svg(w, run_statuses(w, "failed", steps)))
    fills = {g.get("data-block-id"): g.find(f"{NS}rect").get("fill")  # type: ignore[union-attr]
             for g in svg.iter(f"{NS}g") if g.get("class") == "thodare-node"}  # fmt: skip
    assert fills["b"] == FILLS["failed"]
    assert fills["c"] == FILLS["canceled"]
    assert fills["d"] == STATUS_STYLE["not run"][0]


def test_the_trigger_is_a_small_input_marker() -> None:
    """``__trigger__ / trigger_webhook`` is drawn as a narrow "input" box, not a step."""
    w = wf([("__trigger__", "trigger_webhook"), ("a", "t"), ("b", "t")],
           [("__trigger__", "a", None), ("a", "b", None)])  # fmt: skip
    lay = layout(w)
    trigger, a, b = lay.nodes
    assert (trigger.label, trigger.type_label, trigger.width) == ("input", "", TRIGGER_W)
    assert a.width == b.width == NODE_W
    assert a.x == MARGIN + TRIGGER_W + COL_GAP
    assert lay.width == b.x + NODE_W + MARGIN
    edge = lay.edges[0]
    assert edge.points[0][0] == trigger.x + TRIGGER_W  # leaves the marker's right side
    svg = render_svg(w)
    assert ">input<" in svg and "trigger_webhook<" not in svg


def test_nbconvert_html_shows_the_picture_unless_widget_state_was_saved() -> None:
    """nbconvert's HTML draws a DagView output as its SVG (an <img>); a notebook saved
    with widget state (nbclient's default) gets the widget view instead: no picture."""
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from thodare_jupyter.notebook.widgets import DagView

    w = wf([("__trigger__", "trigger_webhook"), ("a", "t")], [("__trigger__", "a", None)],
           name="pic")  # fmt: skip
    view = DagView(w)
    try:
        bundle = view._repr_mimebundle_()
    finally:
        view.close()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    out = new_output("execute_result", data=data, execution_count=1)
    nb = new_notebook(cells=[new_code_cell("DagView(w)", outputs=[out], execution_count=1)])
    html, _ = HTMLExporter().from_notebook_node(nb)
    pictures = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert [base64.b64decode(p).decode() for p in pictures] == [data["image/svg+xml"]]

    model_id = data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = {model_id: {"model_name": "AnyModel", "model_module": "anywidget", "state": {}}}
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2,
                                                      "version_minor": 0}}  # fmt: skip
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert pictures[0] not in html  # the widget view, not the SVG
    assert "application/vnd.jupyter.widget-view+json" in html
