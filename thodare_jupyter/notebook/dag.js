// The DAG widget's front end (anywidget ESM): draws the layout computed in Python,
// colours nodes by status, shows a node's details, and sends actions back.
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function html(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawGraph(model, svg) {
  const g = model.get("graph");
  const statuses = model.get("statuses") || {};
  const progress = model.get("progress") || {};  // a for_each step's items: {ended, total, failed}
  const selected = model.get("selected");
  const palette = model.get("palette");
  const running = Object.keys(statuses).length > 0;  // a run, not just a definition
  svg.replaceChildren();  // the size and viewBox are the canvas's (fit, zoom, pan)
  for (const e of g.edges) {
    const d = e.points.map((p, i) => `${i ? "L" : "M"} ${p[0]} ${p[1]}`).join(" ");
    svg.append(el("path", { d, fill: "none", stroke: "#757575", class: "thodare-edge" }));
    const [x, y] = e.points[e.points.length - 1];  // edges end with a horizontal stub
    svg.append(el("path", { d: `M ${x - 8} ${y - 4} L ${x} ${y} L ${x - 8} ${y + 4} z`, fill: "#757575" }));
    if (e.label) {
      const at = e.label_at || e.points[Math.floor(e.points.length / 2)];
      svg.append(el("text", { x: at[0], y: at[1] - 4, class: "thodare-edge-label" }, e.label));
    }
  }
  for (const n of g.nodes) {
    const status = statuses[n.id] || "pending";
    const [fill, stroke] = running ? (palette[status] || palette.pending) : ["#fafafa", "#9e9e9e"];
    const group = el("g", { class: "thodare-node", "data-block-id": n.id,
      "data-status": running ? status : "definition",
      transform: `translate(${n.x},${n.y})`, tabindex: 0 });
    group.append(el("rect", { width: n.width, height: n.height, rx: 8, ry: 8,
      fill, stroke: n.id === selected ? "#000" : stroke,
      "stroke-width": n.id === selected ? 2.5 : 1,
      "stroke-dasharray": status === "skipped" || status === "not run" ? "4 3" : "none",
      opacity: n.disabled ? 0.45 : 1 }));
    group.append(el("text", { x: 10, y: 20, class: "thodare-node-id" }, n.label || n.id));
    const type = el("text", { x: 10, y: 38, class: "thodare-node-type" }, n.type_label ?? n.type);
    group.append(type);
    const p = progress[n.id];
    if (p) group.append(drawProgress(p, n, type));
    group.append(el("title", {}, `${n.id} (${n.type})${running ? ": " + status : ""}${
      p ? ` · ${p.ended}/${p.total} items${p.failed ? `, ${p.failed} failed` : ""}` : ""}`));
    group.addEventListener("click", () => {
      if (svg.dataset.dragged === "1") return;  // the end of a pan, not a click
      model.set("selected", n.id); model.save_changes();
    });
    svg.append(group);
  }
}

// A for_each step's items at the end of its type line: "k/N", then "· f failed" in red;
// the type is cut (with "…") to leave it room.
function drawProgress(p, n, type) {
  const text = el("text", { x: n.width - 10, y: 38, "text-anchor": "end",
    class: "thodare-node-progress", "data-ended": p.ended, "data-total": p.total,
    "data-failed": p.failed }, `${p.ended}/${p.total}`);
  if (p.failed) text.append(el("tspan", { class: "thodare-node-failed" }, ` · ${p.failed} failed`));
  requestAnimationFrame(() => fitType(type, n.width - 10 - text.getComputedTextLength() - 6));
  return text;
}

function fitType(type, right) {
  const full = type.textContent;
  if (!type.isConnected || type.getComputedTextLength() + 10 <= right) return;
  for (let k = full.length - 1; k > 0; k--) {
    type.textContent = full.slice(0, k) + "…";
    if (type.getComputedTextLength() + 10 <= right) return;
  }
  type.textContent = "";
}

function drawLegend(model, legend) {
  const statuses = Object.values(model.get("statuses") || {});
  const palette = model.get("palette");
  legend.replaceChildren();
  const counts = {};
  for (const s of statuses) counts[s] = (counts[s] || 0) + 1;
  for (const [s, n] of Object.entries(counts).sort()) {
    const item = html("span", { class: "thodare-legend-item" });
    const swatch = html("span", { class: "thodare-swatch" });
    swatch.style.background = (palette[s] || palette.pending)[0];
    swatch.style.borderColor = (palette[s] || palette.pending)[1];
    item.append(swatch, document.createTextNode(`${s} ${n}`));
    legend.append(item);
  }
}

// How long a step took ("420 ms", "3.1 s"); "…" while it runs.
function took(step) {
  if (!step.started_at) return "";
  if (!step.ended_at) return "…";
  const ms = Date.parse(step.ended_at) - Date.parse(step.started_at);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// Every step of the run: status, attempt and time; a click selects its node.
function drawSteps(model, run) {
  const table = html("table", { class: "thodare-steps" });
  for (const s of run.steps || []) {
    const row = html("tr", { "data-block-id": s.block_id, "data-status": s.status });
    const p = (model.get("progress") || {})[s.block_id];
    const items = p ? ` · ${p.ended}/${p.total}${p.failed ? ` · ${p.failed} failed` : ""}` : "";
    row.append(html("td", {}, s.block_id), html("td", { class: "thodare-step-status" },
      (s.attempt > 1 ? `${s.status} (attempt ${s.attempt})` : s.status) + items),
      html("td", { class: "thodare-took" }, took(s)));
    row.addEventListener("click", () => { model.set("selected", s.block_id); model.save_changes(); });
    table.append(row);
  }
  return table;
}

// ── a step's output: tables and files stored by reference (thodare_jupyter/artifacts.py) ──

const isRef = v => v !== null && typeof v === "object" && !Array.isArray(v) && typeof v.$artifact === "string";

// "812 B", "12.4 KiB", "3.0 MiB"
function humanSize(n) {
  if (typeof n !== "number" || !isFinite(n)) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

// The Jupyter server's base URL (JupyterLab and Notebook 7 put it in the page config).
function baseUrl() {
  try {
    const base = JSON.parse(document.getElementById("jupyter-config-data").textContent).baseUrl;
    if (base) return base.endsWith("/") ? base : base + "/";
  } catch (e) { /* not in a Jupyter page: the site root */ }
  return "/";
}

// The server extension's download route (behind Jupyter's auth: the page's login cookie);
// `run`: {id, kernel}, the kernel whose database (and artifact store) the server reads.
function artifactUrl(run, id, format) {
  const path = `thodare/api/runs/${encodeURIComponent(run.id)}/artifacts/${encodeURIComponent(id)}`;
  const query = [format ? `format=${format}` : "", run.kernel ? `kernel=${encodeURIComponent(run.kernel)}` : ""];
  const q = query.filter(Boolean).join("&");
  return baseUrl() + path + (q ? `?${q}` : "");
}

// The id of the kernel behind this widget ("" when there is none).
const kernelIdOf = model => (model.widget_manager && model.widget_manager.kernel
  && model.widget_manager.kernel.id) || "";

function link(href, text, title) {
  return html("a", { href, download: "", class: "thodare-download", title }, text);
}

// An Arrow type as people read it: "large_string" is a string.
const typeName = type => String(type).replace(/\blarge_(string|binary|list)\b/g, "$1");

// A preview cell: text as text (never HTML), null dimmed, nested values as JSON; cut by CSS.
function cell(value) {
  const td = html("td");
  if (value === null || value === undefined) {
    td.classList.add("thodare-null");
    td.textContent = "null";
  } else if (typeof value === "object") {
    td.textContent = JSON.stringify(value);
  } else {
    td.textContent = String(value);
    if (typeof value === "number") td.classList.add("thodare-num");
  }
  td.title = td.textContent;
  return td;
}

function drawTable(ref, run, label) {
  const columns = Object.entries(ref.columns || {});
  const preview = Array.isArray(ref.preview) ? ref.preview : [];
  const box = html("div", { class: "thodare-artifact thodare-table-ref", "data-artifact": ref.$artifact, "data-field": label });
  const head = html("div", { class: "thodare-artifact-head" });
  if (label) head.append(html("span", { class: "thodare-artifact-label" }, label));
  const n = Number(ref.rows);
  head.append(html("span", { class: "thodare-table-shape" },
    `${n.toLocaleString("en-US")} row${n === 1 ? "" : "s"} × ${columns.length} column${columns.length === 1 ? "" : "s"}`));
  if (run.id) {
    head.append(link(artifactUrl(run, ref.$artifact, "csv"), "CSV", "Download the whole table as CSV"),
      link(artifactUrl(run, ref.$artifact, "parquet"), "Parquet", "Download the whole table as Parquet"));
  }
  box.append(head);
  const wrap = html("div", { class: "thodare-table-wrap" });
  const table = html("table", { class: "thodare-preview" });
  const tr = html("tr");
  for (const [name, type] of columns) {
    const th = html("th", { title: `${name}: ${type}` });
    th.append(html("span", { class: "thodare-col-name" }, name), html("span", { class: "thodare-col-type" }, typeName(type)));
    tr.append(th);
  }
  table.append(html("thead"), html("tbody"));
  table.tHead.append(tr);
  for (const row of preview) {
    const r = html("tr");
    for (const [name] of columns) r.append(cell(row ? row[name] : null));
    table.tBodies[0].append(r);
  }
  wrap.append(table);
  box.append(wrap);
  if (preview.length < n) {
    box.append(html("div", { class: "thodare-artifact-note" }, `first ${preview.length} of ${n.toLocaleString("en-US")} rows`));
  }
  return box;
}

function drawFile(ref, run, label) {
  const box = html("div", { class: "thodare-artifact thodare-file-ref", "data-artifact": ref.$artifact, "data-field": label });
  if (label) box.append(html("span", { class: "thodare-artifact-label" }, label));
  box.append(html("span", { class: "thodare-file-name" }, ref.name || "(unnamed file)"),
    html("span", { class: "thodare-file-size" }, humanSize(ref.size)));
  if (ref.media_type) box.append(html("span", { class: "thodare-file-type" }, ref.media_type));
  if (run.id) box.append(link(artifactUrl(run, ref.$artifact), "Download", `Download ${ref.name || "the file"}`));
  return box;
}

function drawJsonRef(ref, run, label) {
  const box = html("div", { class: "thodare-artifact thodare-json-ref", "data-artifact": ref.$artifact, "data-field": label });
  if (label) box.append(html("span", { class: "thodare-artifact-label" }, label));
  const what = ref.length !== undefined ? `a list of ${ref.length}` : ref.keys ? `keys ${ref.keys.join(", ")}` : "JSON";
  box.append(html("span", {}, `${what} · ${humanSize(ref.size)} of JSON, stored apart`));
  if (run.id) box.append(link(artifactUrl(run, ref.$artifact), "Download", "Download the JSON"));
  return box;
}

function drawRef(ref, run, label) {
  if (ref.kind === "table") return drawTable(ref, run, label);
  if (ref.kind === "file") return drawFile(ref, run, label);
  return drawJsonRef(ref, run, label);
}

// An output as JSON (as ever); a table or file field (or the whole output stored apart) drawn.
function drawOutput(output, run) {
  if (isRef(output)) return drawRef(output, run, "");
  const pre = value => html("pre", {}, JSON.stringify(value, null, 2));
  if (typeof output !== "object" || Array.isArray(output) || !Object.values(output).some(isRef)) {
    return pre(output);
  }
  const box = html("div", { class: "thodare-output" });
  for (const [k, v] of Object.entries(output)) if (isRef(v)) box.append(drawRef(v, run, k));
  const rest = Object.fromEntries(Object.entries(output).filter(([, v]) => !isRef(v)));
  if (Object.keys(rest).length) box.append(pre(rest));
  return box;
}

// The Jupyter user this page is logged in as (`{baseUrl}api/me`: its name, else its
// username, as the server extension records it), asked once; null when the page cannot
// say (not a Jupyter page): the kernel then names its own user.
let jupyterUser;
function whoAmI() {
  if (jupyterUser === undefined) {
    jupyterUser = fetch(baseUrl() + "api/me", { credentials: "same-origin" })
      .then(r => (r.ok ? r.json() : null))
      .then(me => (me && me.identity && (me.identity.name || me.identity.username)) || null)
      .catch(() => null);
  }
  return jupyterUser;
}

const shown = v => (typeof v === "string" ? v : JSON.stringify(v));

// A step's params: each template next to the value it ran with (hidden and env values
// masked); "=" when it ran with the template as written.
function drawParams(d) {
  const table = html("table", { class: "thodare-params" });
  const ran = d.resolved && typeof d.resolved === "object";
  const head = html("tr");
  head.append(html("th", {}, "param"), html("th", {}, "template"));
  if (ran) head.append(html("th", {}, "ran with"));
  table.append(head);
  const keys = [...new Set([...Object.keys(d.params || {}), ...Object.keys(ran ? d.resolved : {})])];
  for (const k of keys) {
    const row = html("tr", { "data-param": k });
    row.append(html("td", { class: "thodare-param-name" }, k),
      html("td", { class: "thodare-param-template" }, k in (d.params || {}) ? shown(d.params[k]) : ""));
    if (ran) row.append(ranWith(d.params || {}, d.resolved, k));
    table.append(row);
  }
  return table;
}

function ranWith(templates, resolved, k) {
  const same = k in templates && JSON.stringify(templates[k]) === JSON.stringify(resolved[k]);
  const td = html("td", { class: "thodare-param-value" }, same ? "=" : k in resolved ? shown(resolved[k]) : "");
  if (same) Object.assign(td.dataset, { same: "true" });
  if (same) td.title = "ran with the template as written";
  return td;
}

// "attempt 2 · started 2026-12-04 20:31:02 · took 1.2 s"
function drawTiming(d) {
  const parts = [];
  if (d.attempt) parts.push(`attempt ${d.attempt}`);
  if (d.started_at) parts.push(`started ${new Date(d.started_at).toLocaleString("sv-SE")}`);
  const t = took(d);
  if (t && t !== "…") parts.push(`took ${t}`);
  return html("div", { class: "thodare-timing" }, parts.join(" · "));
}

// Approve/Reject with a comment (as the page's Jupyter user); or the event form, its
// correlation key the one the step resolved (editable), and Send.
function drawWaitActions(model, d, panel) {
  const box = html("div", { class: "thodare-actions" });
  if (d.type === "human_approval") {
    const comment = html("input", { placeholder: "comment (optional)", class: "thodare-comment" });
    const approve = html("button", { class: "thodare-approve" }, "Approve");
    const reject = html("button", { class: "thodare-reject" }, "Reject");
    const answer = approved => whoAmI().then(by =>
      model.send({ kind: "approve", block: d.id, approved, comment: comment.value, by }));
    approve.onclick = () => answer(true);
    reject.onclick = () => answer(false);
    box.append(html("div", { class: "thodare-wait-what" }, "waiting for an approval"), comment, approve, reject);
  } else {
    const key = html("input", { class: "thodare-event-key", placeholder: "(no correlation key)" });
    key.value = d.waiting_key || "";
    const payload = html("textarea", { class: "thodare-payload", rows: 3, placeholder: '{"key": "value"}' });
    const send = html("button", { class: "thodare-send" }, "Send event");
    send.onclick = () => model.send({ kind: "event", block: d.id, key: key.value, payload: payload.value });
    const label = html("label", { class: "thodare-label" }, "correlation key ");
    label.append(key);
    const what = html("div", { class: "thodare-wait-what" }, "waiting for event ");
    what.append(html("code", {}, d.waiting_for));
    box.append(what, label, payload, send);
  }
  panel.append(box);
}

// "block: error" when the run failed at a block, else the error alone (never ": error").
const errorHeader = (run) => (run.failed_block ? `${run.failed_block}: ${run.error}` : run.error);

// What was typed in a wait form (comment, key, payload) and where the cursor was, so a
// redraw (the kernel pushes changes up to 5 times a second) keeps it for the same block.
const FORM_FIELDS = [".thodare-comment", ".thodare-event-key", ".thodare-payload"];
function typed(panel) {
  const fields = FORM_FIELDS.map(sel => panel.querySelector(sel));
  const focused = FORM_FIELDS.findIndex((_, i) => fields[i] && fields[i] === document.activeElement);
  return { block: panel.dataset.block, values: fields.map(f => f && f.value), focused };
}
function retype(panel, kept) {
  if (kept.block !== panel.dataset.block) return;
  FORM_FIELDS.forEach((sel, i) => {
    const field = panel.querySelector(sel);
    if (field && kept.values[i] != null) field.value = kept.values[i];
    if (field && i === kept.focused) field.focus();
  });
}

function drawDetails(model, panel) {
  const d = model.get("details") || {};
  const kept = typed(panel);
  panel.dataset.block = d.id || "";
  fillDetails(model, panel, d);
  retype(panel, kept);
}

function fillDetails(model, panel, d) {
  const run = model.get("run") || {};
  panel.replaceChildren();
  const notice = model.get("notice");
  if (run.status) {
    const head = html("div", { class: "thodare-run" }, `run ${run.id ? run.id.slice(0, 12) : ""}: ${run.status}`);
    head.dataset.status = run.status;
    panel.append(head);
    if (run.error) panel.append(html("pre", { class: "thodare-error" }, errorHeader(run)));
    panel.append(drawSteps(model, run));
  }
  if (notice) panel.append(html("div", { class: "thodare-notice" }, notice));
  if (!d.id) {
    panel.append(html("div", { class: "thodare-hint" }, "Click a step to see its params and output."));
    return;
  }
  panel.append(html("h4", {}, `${d.id} · ${d.type}${d.status ? " · " + d.status : ""}`));
  if (d.status) panel.append(drawTiming(d));
  if (run.id && d.status === "waiting" && d.waiting_for
      && (d.type === "human_approval" || d.type === "wait_for_event")) drawWaitActions(model, d, panel);
  panel.append(html("div", { class: "thodare-label" }, "params"));
  panel.append(drawParams(d));
  if (d.output !== undefined && d.output !== null) {
    panel.append(html("div", { class: "thodare-label" }, "output"));
    panel.append(drawOutput(d.output, { id: run.id, kernel: kernelIdOf(model) }));
  }
  if (d.error) panel.append(html("pre", { class: "thodare-error" }, d.error));
  if (d.child) {
    const child = html("div", { class: "thodare-child", title: d.child.run_id },
      `child run ${d.child.run_id.slice(0, 12)} (${d.child.workflow || "-"}): ${d.child.status}`);
    child.dataset.status = d.child.status;
    panel.append(child);
  }
  if (d.logs && d.logs.length) {
    panel.append(html("div", { class: "thodare-label" }, "logs"));
    // a for_each step's lines are its items' (each[3]): say which
    const text = d.logs.map((l) => `${l.block_id && l.block_id !== d.id ? l.block_id + " " : ""}`
      + `#${l.attempt} ${l.stream}: ${l.text}`).join("\n");
    panel.append(html("pre", { class: "thodare-logs" }, text));
  }
  if (!run.id) return;
  const fork = html("button", { class: "thodare-fork" }, "Re-run from here");
  fork.onclick = () => model.send({ kind: "fork", block: d.id });
  panel.append(fork);
}

// ── the canvas: the drawing scaled to the cell's width, with zoom and pan ──

const MAX_H = 560, MIN_H = 96, BIG_H = 320, MAX_ZOOM = 2;

// A canvas showing `svg` through a viewBox: fitted to its width (and MAX_H) at first and on
// every resize until the user zooms or pans; buttons +, -, fit; ctrl/cmd + wheel zooms
// around the pointer; a drag pans (and is not a click on a node).
function makeCanvas(svg, graphSize) {
  const wrap = html("div", { class: "thodare-canvas" });
  const tools = html("div", { class: "thodare-zoom" });
  const button = (cls, text, title) => html("button", { class: cls, title, type: "button" }, text);
  const zoomIn = button("thodare-zoom-in", "+", "Zoom in");
  const zoomOut = button("thodare-zoom-out", "\u2212", "Zoom out");
  const fit = button("thodare-fit", "fit", "Fit the whole graph");
  const actual = button("thodare-actual", "1:1", "Actual size (drag to pan)");
  tools.append(zoomIn, zoomOut, fit, actual);
  wrap.append(tools, svg);
  const view = { x: 0, y: 0, k: 1, w: 0, h: 0, fitted: true };

  const apply = () => {
    svg.setAttribute("width", view.w);
    svg.setAttribute("height", view.h);
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w / view.k} ${view.h / view.k}`);
    wrap.dataset.zoom = view.k.toFixed(3);
  };
  const refit = () => {
    const { width: gw, height: gh } = graphSize();
    const w = Math.max(wrap.clientWidth, 1);
    if (!gw || !gh || wrap.clientWidth === 0) return;  // not laid out yet: the observer calls again
    const k = Math.min(1, w / gw, MAX_H / gh);
    // a graph shrunk below half size gets room to zoom into (the canvas is not a thin strip)
    const h = Math.max(k < 0.5 ? Math.min(BIG_H, gh) : MIN_H, Math.ceil(gh * k));
    Object.assign(view, { w, h, k, fitted: true });
    view.x = 0;  // k <= w / gw: the graph fits across, at the left
    view.y = -(view.h / k - gh) / 2;
    apply();
  };
  const zoom = (factor, cx = view.w / 2, cy = view.h / 2) => {
    const { width: gw, height: gh } = graphSize();
    const least = Math.min(1, view.w / gw, view.h / gh) / 2;
    const k = Math.min(MAX_ZOOM, Math.max(least, view.k * factor));
    view.x += cx / view.k - cx / k;  // the point under the pointer stays put
    view.y += cy / view.k - cy / k;
    view.k = k;
    view.fitted = false;
    apply();
  };
  zoomIn.onclick = () => zoom(1.25);
  zoomOut.onclick = () => zoom(0.8);
  fit.onclick = refit;
  actual.onclick = () => zoom(1 / view.k, 0, view.h / 2);  // 1:1, the left edge kept
  wrap.addEventListener("wheel", (e) => {
    if (!(e.ctrlKey || e.metaKey)) return;  // a plain wheel scrolls the notebook
    e.preventDefault();
    const r = svg.getBoundingClientRect();
    zoom(Math.exp(-e.deltaY / 300), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
    svg.dataset.dragged = "0";
  });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    if (!drag.moved) svg.setPointerCapture(e.pointerId);
    drag.moved = true;
    svg.dataset.dragged = "1";
    wrap.classList.add("thodare-panning");
    view.x = drag.vx - dx / view.k;
    view.y = drag.vy - dy / view.k;
    view.fitted = false;
    apply();
  });
  const stop = () => { drag = null; wrap.classList.remove("thodare-panning"); };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointercancel", stop);
  const observer = new ResizeObserver(() => { if (view.fitted || view.w !== wrap.clientWidth) refit(); });
  observer.observe(wrap);
  return { wrap, refit, dispose: () => observer.disconnect() };
}

// ── a widget whose kernel is gone (restarted, shut down) ──

const GONE = ["restarting", "autorestarting", "dead"];

// Calls `onGone` once the kernel behind this widget restarts, dies or is replaced: the
// widget's model is gone with it, and the widget would freeze on its last state.
// Returns what stops watching (the view is removed).
function watchKernel(model, onGone) {
  const kernel = model.widget_manager && model.widget_manager.kernel;
  if (!kernel || !kernel.statusChanged) return () => {};
  let fired = false;
  const once = () => { if (!fired) { fired = true; onGone(); } };
  const status = (_, s) => { if (GONE.includes(s)) once(); };
  kernel.statusChanged.connect(status);
  if (kernel.disposed) kernel.disposed.connect(once);
  return () => {
    kernel.statusChanged.disconnect(status);
    if (kernel.disposed) kernel.disposed.disconnect(once);
  };
}

// The banner: the kernel is gone; for a run, Reattach (the labextension runs
// `wfkit.get_handle("<run id>")` in a new cell below, once the definitions ran again).
function goneBanner(model, root) {
  const runId = (model.get("run") || {}).id || "";
  const banner = html("div", { class: "thodare-gone" });
  if (!runId) {
    banner.append("The kernel that drew this is gone; run the cell again for a live view.");
  } else {
    const reattach = html("button", { class: "thodare-reattach", type: "button",
      title: `Runs wfkit.get_handle("${runId}") in a new cell below` }, "Reattach");
    reattach.onclick = () => root.dispatchEvent(
      new CustomEvent("thodare-reattach", { bubbles: true, detail: { runId } }));
    banner.append("The kernel that drew this run is gone. Run the definition cells again, then ",
      reattach);
  }
  root.dataset.kernel = "gone";
  root.prepend(banner);
}

function render({ model, el: root }) {
  root.classList.add("thodare-dag");
  const left = html("div", { class: "thodare-left" });
  const legend = html("div", { class: "thodare-legend" });
  const svg = el("svg", { role: "img" });
  const canvas = makeCanvas(svg, () => model.get("graph") || {});
  left.append(legend, canvas.wrap);
  const panel = html("div", { class: "thodare-details" });
  root.append(left, panel);
  const redraw = () => { drawGraph(model, svg); drawLegend(model, legend); };
  const redetail = () => drawDetails(model, panel);
  redraw();
  redetail();
  model.on("change:graph", () => { redraw(); canvas.refit(); });
  model.on("change:statuses", redraw);
  model.on("change:progress", () => { redraw(); redetail(); });
  model.on("change:selected", () => { redraw(); redetail(); });
  model.on("change:details", redetail);
  model.on("change:run", redetail);
  model.on("change:notice", redetail);
  // the picture of what shows now, kept in the output by the labextension (fallback.ts)
  const sendPicture = () => {
    const svg = model.get("picture");
    if (svg) root.dispatchEvent(new CustomEvent("thodare-picture", { bubbles: true, detail: svg }));
  };
  model.on("change:picture", sendPicture);
  setTimeout(sendPicture, 0);
  const unwatch = watchKernel(model, () => goneBanner(model, root));
  return () => { canvas.dispose(); unwatch(); };  // anywidget calls it when the view goes
}

export default { render };
