// The proposal widget's front end (anywidget ESM): explanation, env warnings, ops,
// summary, before/after DAGs, the JSON diff, and Accept / Reject.
function html(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

// One op in words: "add approve (human_approval) {…}", "connect fetch → approve", ...
function describe(op) {
  const t = op.operation_type, id = op.block_id, to = op.target_block_id;
  const params = op.params && Object.keys(op.params).length ? " " + JSON.stringify(op.params) : "";
  const name = op.name ? ` named "${op.name}"` : "";
  if (t === "add") return `add ${id} (${op.type})${name}${params}`;
  if (t === "edit" || t === "update") return `edit ${id}${name}${params}`;
  if (t === "delete" || t === "remove") return `delete ${id}`;
  const handle = op.source_handle ? ` [${op.source_handle}]` : "";
  if (t === "connect") return `connect ${id}${handle} → ${to}`;
  if (t === "disconnect") return `disconnect ${id} ↛ ${to}`;
  return JSON.stringify(op);
}

function draw(model, root) {
  const d = model.get("data");
  const state = model.get("state");
  root.dataset.state = state;
  root.replaceChildren();
  root.append(html("div", { class: "thodare-explanation" }, d.explanation || "(no explanation)"));
  // the same words as env_warning() in proposal.py
  for (const name of d.env_refs || []) {
    root.append(html("div", { class: "thodare-env-warning" },
      `⚠ reads env ${name}: a secret value will be used when this runs`));
  }
  const ops = html("ol", { class: "thodare-ops" });
  for (const op of d.ops || []) ops.append(html("li", {}, describe(op)));
  root.append(ops);
  root.append(html("pre", { class: d.applied ? "thodare-summary" : "thodare-summary thodare-summary-failed" },
    `${d.summary} (${d.attempts} attempt${d.attempts === 1 ? "" : "s"})`));
  const pics = html("div", { class: "thodare-pictures" });
  for (const svg of [d.svg_before, d.svg_after]) {
    const box = html("div");
    box.innerHTML = svg;  // our own SVG, drawn in Python with every text escaped
    pics.append(box);
  }
  root.append(pics);
  const diff = html("details");
  diff.append(html("summary", {}, "JSON diff"), html("pre", { class: "thodare-diff" }, d.diff || "(no change)"));
  root.append(diff);
  if (state === "pending") {
    const accept = html("button", { class: "thodare-accept" }, "Accept");
    const reject = html("button", { class: "thodare-reject" }, "Reject");
    accept.addEventListener("click", () => model.send({ action: "accept" }));
    reject.addEventListener("click", () => model.send({ action: "reject" }));
    root.append(accept, reject);
  }
  const message = model.get("message");
  if (message) root.append(html("div", { class: "thodare-message" }, message));
  const source = model.get("new_source");
  if (source) root.append(html("pre", { class: "thodare-new-source" }, source));
}

function render({ model, el }) {
  const root = html("div", { class: "thodare-proposal" });
  el.append(root);
  const redraw = () => draw(model, root);
  redraw();
  model.on("change:state", redraw);
  model.on("change:message", redraw);
  model.on("change:new_source", redraw);
}

export default { render };
