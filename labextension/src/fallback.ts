/**
 * A DAG display's last picture when its live widget cannot show.
 *
 * A DagView output carries the widget view, the static SVG and our metadata
 * (`thodare.run_id`). JupyterLab picks the widget view, and without a widget
 * model (a reopened notebook, a kernel restarted) shows "Loading widget..." or
 * an error; in an untrusted notebook it refuses both and shows the text repr.
 * Here each notebook's widget-view renderer is wrapped: it shows the bundle's
 * SVG at once (as an <img>, so nothing in it runs, trusted or not), hands the
 * output to the widgets renderer when the output is trusted, and swaps to the
 * live widget as soon as that draws one. While only the picture shows, a
 * banner says the kernel that drew it is gone and offers to reattach: a cell
 * below runs `wfkit.get_handle("<run id>")` in the current kernel. A live DAG
 * widget sends its latest picture (`thodare-picture`), kept in the output, so a
 * saved notebook holds the run's last state.
 */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import type { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import { h } from './dom';

const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';
const SVG_MIME = 'image/svg+xml';
const BANNER_DELAY_MS = 1500;
const RUN_ID = /^[0-9a-f]{32}$/;
const RESTORE_WAIT_MS = 10_000;

/** What we ask of @jupyter-widgets/jupyterlab-manager's widget manager. */
interface IWidgetManager {
  restoredStatus: boolean;
  restored: { connect(fn: () => void): void };
  has_model(id: string): boolean;
}

/**
 * The manager a widgets renderer was given (its `_manager` promise), or null when the
 * renderer does not have that shape (another widgets version: it is rendered as is).
 */
async function managerOf(renderer: IRenderMime.IRenderer): Promise<IWidgetManager | null> {
  const pending = (renderer as unknown as { _manager?: { promise?: Promise<unknown> } })._manager;
  if (!pending || !(pending.promise instanceof Promise)) {
    return null;
  }
  const manager = (await pending.promise) as Partial<IWidgetManager> | null;
  const usable =
    manager && typeof manager.has_model === 'function' && manager.restored !== undefined;
  return usable ? (manager as IWidgetManager) : null;
}

/** The widgets renderer factory a notebook has now; `changed` when the widget manager replaces it. */
class Slot {
  factory: IRenderMime.IRendererFactory | null = null;
  readonly changed = new Signal<Slot, void>(this);
}

const slots = new WeakMap<IRenderMimeRegistry, Slot>();

/** Wrap `rendermime`'s widget-view renderer, now and whenever it is replaced. */
function wrapWidgetRenderer(rendermime: IRenderMimeRegistry): void {
  if (slots.has(rendermime)) {
    return;
  }
  const slot = new Slot();
  slots.set(rendermime, slot);
  const ours: IRenderMime.IRendererFactory = {
    safe: true, // draws an <img> until the (unsafe) widgets renderer may run: trusted only
    mimeTypes: [WIDGET_MIME],
    createRenderer: options => new PictureRenderer(options, slot)
  };
  const add = rendermime.addFactory.bind(rendermime);
  rendermime.addFactory = (factory, rank) => {
    if (factory !== ours && factory.mimeTypes.includes(WIDGET_MIME)) {
      slot.factory = factory;
      add(ours, rank);
      slot.changed.emit();
      return;
    }
    add(factory, rank);
  };
  const existing = rendermime.getFactory(WIDGET_MIME);
  if (existing && existing !== ours) {
    slot.factory = existing;
  }
  add(ours, rendermime.getRank(WIDGET_MIME) ?? -10);
}

/** The picture, the banner, and (trusted outputs) the widgets renderer, swapped in when live. */
class PictureRenderer extends Panel implements IRenderMime.IRenderer {
  constructor(
    private readonly options: IRenderMime.IRendererOptions,
    private readonly slot: Slot
  ) {
    super();
    this.addClass('thodare-output');
    this.addWidget(this.picture);
    this.node.addEventListener('thodare-picture', this.onPicture);
    slot.changed.connect(this.retry, this);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const view = model.data[WIDGET_MIME] as { model_id?: string } | undefined;
    this.model = model;
    this.drawPicture(model);
    if (!model.trusted || !view?.model_id) {
      this.showBanner();
      return;
    }
    if (this.inner && this.modelId === view.model_id) {
      return; // the same widget again (its picture was updated)
    }
    this.modelId = view.model_id;
    this.retry();
  }

  dispose(): void {
    this.slot.changed.disconnect(this.retry, this);
    this.watch?.disconnect();
    window.clearTimeout(this.timer);
    super.dispose();
  }

  /** (Re)start the widgets renderer, unless a live widget shows already. */
  private retry(): void {
    if (!this.model || !this.model.trusted || this.live || !this.slot.factory) {
      return;
    }
    this.watch?.disconnect();
    this.inner?.dispose();
    const inner = this.slot.factory.createRenderer({ ...this.options, mimeType: WIDGET_MIME });
    inner.hide();
    this.inner = inner;
    this.addWidget(inner);
    this.watch = new MutationObserver(() => this.check(inner));
    this.watch.observe(inner.node, { childList: true, subtree: false, characterData: true });
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.showBanner(), BANNER_DELAY_MS);
    void this.start(inner, this.model, this.modelId);
  }

  /**
   * Render the widget when its model exists: asked of the widget manager once it has
   * restored the kernel's widgets, so a missing model (a reopened notebook) is not
   * an error; without a manager yet, nothing (a later factory retries).
   */
  private async start(
    inner: IRenderMime.IRenderer,
    model: IRenderMime.IMimeModel,
    modelId: string
  ): Promise<void> {
    const manager = await managerOf(inner);
    if (inner !== this.inner) {
      return;
    }
    if (manager) {
      if (!manager.restoredStatus) {
        await new Promise<void>(resolve => {
          manager.restored.connect(() => resolve());
          window.setTimeout(resolve, RESTORE_WAIT_MS);
        });
      }
      if (inner !== this.inner) {
        return;
      }
      if (!manager.has_model(modelId)) {
        this.showBanner();
        return;
      }
    }
    await inner.renderModel(model);
    this.check(inner);
  }

  /** A widget drawn: show it; an error (no such model): keep the picture, say why. */
  private check(inner: IRenderMime.IRenderer): void {
    if (inner !== this.inner || this.live) {
      return;
    }
    if (inner.node.firstElementChild) {
      this.live = true;
      window.clearTimeout(this.timer);
      this.banner.remove();
      this.picture.hide();
      inner.show();
      this.node.dataset.view = 'live';
    } else if ((inner.node.textContent ?? '').startsWith('Error')) {
      this.showBanner();
    }
  }

  private drawPicture(model: IRenderMime.IMimeModel): void {
    if (this.live) {
      return; // hidden for good: the live widget shows
    }
    const svg = model.data[SVG_MIME];
    const node = this.picture.node;
    node.className = 'thodare-picture';
    if (typeof svg !== 'string' || !svg.trim()) {
      node.replaceChildren(h('pre', '', String(model.data['text/plain'] ?? '')));
      return;
    }
    if (svg === this.drawn) {
      return;
    }
    this.drawn = svg;
    const img = h('img');
    // an SVG loaded as an image runs no script and loads nothing: safe in any notebook
    img.src = 'data:image/svg+xml;base64,' + btoa(unescape(encodeURIComponent(svg)));
    img.alt = label(svg) || String(model.data['text/plain'] ?? 'workflow DAG');
    node.replaceChildren(img);
    this.node.dataset.view = 'picture';
  }

  private showBanner(): void {
    // only our DAG outputs (metadata `thodare`) have a kernel-gone story: another widget
    // keeps its plain fallback, as JupyterLab would show it
    if (this.live || this.banner.isConnected || !this.model?.metadata?.thodare) {
      return;
    }
    const meta = (this.model.metadata?.thodare ?? {}) as { run_id?: string };
    const runId = typeof meta.run_id === 'string' && RUN_ID.test(meta.run_id) ? meta.run_id : '';
    this.banner.className = 'thodare-gone';
    if (!runId) {
      this.banner.replaceChildren(
        'This is the last picture; run the cell again for the live view.'
      );
    } else {
      const reattach = h('button', 'thodare-reattach', 'Reattach');
      reattach.title = `Runs wfkit.get_handle("${runId}") in a new cell below`;
      reattach.onclick = () => {
        this.node.dispatchEvent(
          new CustomEvent('thodare-reattach', { bubbles: true, detail: { runId } })
        );
      };
      this.banner.replaceChildren(
        'The kernel that drew this run is gone: this is its last picture. ' +
          'Run the definition cells again, then ',
        reattach
      );
    }
    this.node.insertBefore(this.banner, this.node.firstChild);
  }

  /** A live DAG's newest picture: kept in the output (saved with the notebook). */
  private readonly onPicture = (event: Event): void => {
    const svg = (event as CustomEvent<string>).detail;
    const model = this.model;
    if (!model || typeof svg !== 'string' || svg === model.data[SVG_MIME]) {
      return;
    }
    model.setData({ data: { ...model.data, [SVG_MIME]: svg } });
  };

  private model: IRenderMime.IMimeModel | null = null;
  private modelId = '';
  private inner: IRenderMime.IRenderer | null = null;
  private live = false;
  private drawn = '';
  private timer = 0;
  private watch: MutationObserver | null = null;
  private readonly picture = new Widget();
  private readonly banner = h('div', 'thodare-gone');
}

/** The SVG's aria-label (parsed as XML, never as HTML; nothing in it runs). */
function label(svg: string): string {
  const root = new DOMParser().parseFromString(svg, SVG_MIME).documentElement;
  return root.nodeName === 'svg' ? (root.getAttribute('aria-label') ?? '') : '';
}

/** Every notebook's renderer wrapped; "Reattach" inserts and runs a cell under the output. */
export function installFallback(tracker: INotebookTracker): void {
  const wrap = (panel: NotebookPanel) => wrapWidgetRenderer(panel.content.rendermime);
  tracker.forEach(wrap);
  tracker.widgetAdded.connect((_, panel) => wrap(panel));
  document.addEventListener('thodare-reattach', event => {
    const runId = (event as CustomEvent<{ runId: string }>).detail?.runId;
    const target = event.target as Node;
    const panel = tracker.find(p => p.node.contains(target));
    if (!panel || !runId || !RUN_ID.test(runId)) {
      return;
    }
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.node.contains(target));
    if (index >= 0) {
      notebook.activeCellIndex = index;
    }
    NotebookActions.insertBelow(notebook);
    notebook.activeCell?.model.sharedModel.setSource(`wfkit.get_handle("${runId}")`);
    void NotebookActions.run(notebook, panel.sessionContext);
  });
}
