/**
 * The `thodare` comm: the kernel opens it after `%load_ext thodare_jupyter`.
 *
 * A comm target is registered on every notebook's kernel (again after a kernel
 * change); the latest comm per kernel answers requests (`{id, action, ...}` →
 * `{reply_to, ok, ...}`) and brings events (`rewrite_cell`).
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import { rewriteCell } from './rewrite';

export const TARGET = 'thodare';
export const PROTOCOL = 1;

/** A reply with `ok: true` (an `ok: false` reply rejects with its error). */
export type Reply = JSONObject & { ok: true };

interface IPending {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

/** One kernel's comm and its requests in flight. */
class Link {
  constructor(
    readonly comm: Kernel.IComm,
    private readonly onEvent: (data: JSONObject) => void
  ) {
    comm.onMsg = msg => this.receive(msg.content.data as JSONObject);
    comm.onClose = () => this.fail('The kernel closed the workflow connection.');
  }

  request(action: string, fields: JSONObject): Promise<Reply> {
    const id = `${Date.now().toString(36)}-${(Link.next++).toString(36)}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        this.comm.send({ id, action, ...fields });
      } catch (e) {
        this.pending.delete(id);
        reject(new Error(`Could not reach the kernel: ${(e as Error).message}`));
      }
    });
  }

  fail(message: string): void {
    for (const p of this.pending.values()) {
      p.reject(new Error(message));
    }
    this.pending.clear();
  }

  private receive(data: JSONObject): void {
    const to = data.reply_to;
    if (typeof to === 'string') {
      const p = this.pending.get(to);
      this.pending.delete(to);
      if (!p) {
        return;
      }
      if (data.ok === true) {
        p.resolve(data as Reply);
      } else {
        p.reject(new Error(String(data.error ?? 'The kernel refused the request.')));
      }
    } else if (typeof data.event === 'string') {
      this.onEvent(data);
    }
  }

  private static next = 0;
  private readonly pending = new Map<string, IPending>();
}

/** Comms to the kernels of open notebooks, by kernel id. */
export class KernelLinks {
  constructor(private readonly tracker: INotebookTracker) {
    tracker.forEach(panel => this.watch(panel));
    tracker.widgetAdded.connect((_, panel) => this.watch(panel));
  }

  /** Emits the kernel id whose comm opened or closed, or that a notebook connected to. */
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  /** The kernel of the active notebook, if it has one. */
  get currentKernel(): Kernel.IKernelConnection | null {
    return this.tracker.currentWidget?.sessionContext.session?.kernel ?? null;
  }

  /** Send a request to the active notebook's kernel and wait for its reply. */
  async request(action: string, fields: JSONObject = {}): Promise<Reply> {
    const kernel = this.currentKernel;
    if (!kernel) {
      throw new Error('Open a notebook (with `%load_ext thodare_jupyter`) to use the assistant.');
    }
    let link = this.links.get(kernel.id);
    if (!link) {
      let connecting = this.connecting.get(kernel.id);
      if (!connecting) {
        connecting = this.connect(kernel);
        this.connecting.set(kernel.id, connecting); // one comm however many ask at once
        void connecting.finally(() => this.connecting.delete(kernel.id)).catch(() => undefined);
      }
      link = await connecting;
    }
    return link.request(action, fields);
  }

  /**
   * Open a comm from this page (after a reload, the kernel's own comm went to the old page).
   * Only when the kernel has the extension loaded: it then has a `thodare` comm open.
   */
  private async connect(kernel: Kernel.IKernelConnection): Promise<Link> {
    const info = await kernel.requestCommInfo({ target_name: TARGET });
    const comms = info.content.status === 'ok' ? info.content.comms : {};
    if (Object.keys(comms).length === 0) {
      throw new Error('Run `%load_ext thodare_jupyter` in this notebook first.');
    }
    const comm = kernel.createComm(TARGET);
    comm.open({ protocol: PROTOCOL }); // before adopt(): its listeners may send at once
    return this.adopt(kernel, comm);
  }

  private watch(panel: NotebookPanel): void {
    const ctx = panel.sessionContext;
    const register = () => {
      const kernel = ctx.session?.kernel;
      if (kernel && !this.registered.has(kernel)) {
        this.registered.add(kernel);
        kernel.registerCommTarget(TARGET, (comm, msg) => this.opened(kernel, comm, msg));
        this._changed.emit(kernel.id); // a page opened on a running kernel: try to connect
      }
    };
    ctx.kernelChanged.connect(register);
    void ctx.ready.then(register);
    register();
  }

  private opened(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    msg: KernelMessage.ICommOpenMsg
  ): void {
    const protocol = (msg.content.data as JSONObject).protocol;
    if (protocol !== PROTOCOL) {
      console.warn(`thodare: kernel comm speaks protocol ${protocol}, expected ${PROTOCOL}`);
      comm.close();
      return;
    }
    this.adopt(kernel, comm);
  }

  /** Make `comm` the kernel's link (the previous one's requests fail). */
  private adopt(kernel: Kernel.IKernelConnection, comm: Kernel.IComm): Link {
    this.links.get(kernel.id)?.fail('The kernel opened a new workflow connection.');
    const link = new Link(comm, data => void this.event(kernel, link, data));
    const closed = comm.onClose;
    comm.onClose = m => {
      closed(m);
      if (this.links.get(kernel.id) === link) {
        this.links.delete(kernel.id);
        this._changed.emit(kernel.id);
      }
    };
    this.links.set(kernel.id, link);
    this._changed.emit(kernel.id);
    return link;
  }

  private async event(kernel: Kernel.IKernelConnection, link: Link, data: JSONObject) {
    if (data.event !== 'rewrite_cell') {
      console.warn(`thodare: unknown kernel event ${String(data.event)}`);
      return;
    }
    const workflow = String(data.workflow);
    const panels: NotebookPanel[] = [];
    this.tracker.forEach(p => {
      if (p.sessionContext.session?.kernel?.id === kernel.id) {
        panels.push(p);
      }
    });
    const found = panels.some(p => rewriteCell(p, workflow, String(data.source)));
    link.comm.send({ action: 'cell_rewritten', workflow, found });
  }

  private readonly links = new Map<string, Link>();
  private readonly connecting = new Map<string, Promise<Link>>();
  private readonly registered = new WeakSet<Kernel.IKernelConnection>();
  private readonly _changed = new Signal<this, string>(this);
}
