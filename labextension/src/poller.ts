/**
 * Widgets refreshed when the database changes: the server pushes changes (server-sent
 * events, `GET thodare/api/events`), one stream per page shared by every widget. While
 * the stream is down a widget looks every 5 s instead, and the stream reconnects.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { eventsUrl } from './api';

/** How often a widget looks while the change stream is down. */
const FALLBACK_MS = 5000;

/** The page's change stream: `changed` fires on each change and after each (re)connect. */
class LiveFeed {
  /** Fires when the database changed, or the stream (re)connected (to catch up). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Whether the stream is open (widgets then do not poll). */
  get connected(): boolean {
    return this._connected;
  }

  /** Open the stream for one more subscriber; the returned call lets go of it. */
  hold(): () => void {
    this.holders++;
    this.open();
    let held = true;
    return () => {
      if (held) {
        held = false;
        this.holders--;
        if (this.holders === 0) {
          this.close();
        }
      }
    };
  }

  /** Reopen on the current route (after the kernel whose database is shown changed). */
  retarget(): void {
    if (this.holders > 0 && this.url !== this.target()) {
      this.close();
      this.open();
    }
  }

  private target(): string {
    const token = ServerConnection.makeSettings().token;
    const url = eventsUrl();
    return token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
  }

  private open(): void {
    if (this.source) {
      return;
    }
    window.clearTimeout(this.retry);
    this.url = this.target();
    const source = new EventSource(this.url, { withCredentials: true });
    this.source = source;
    source.addEventListener('ready', () => this.set(true));
    source.addEventListener('change', () => this._changed.emit());
    source.onerror = () => {
      this.set(false);
      if (source.readyState === EventSource.CLOSED && this.source === source) {
        // refused (not reconnecting by itself): try again later
        this.source = null;
        this.retry = window.setTimeout(() => this.holders > 0 && this.open(), FALLBACK_MS);
      }
    };
  }

  private close(): void {
    window.clearTimeout(this.retry);
    this.source?.close();
    this.source = null;
    this.set(false);
  }

  private set(connected: boolean): void {
    if (connected !== this._connected) {
      this._connected = connected;
      this._changed.emit(); // connected: catch up; lost: widgets fall back to looking
    }
  }

  private source: EventSource | null = null;
  private url = '';
  private holders = 0;
  private retry: number | undefined;
  private _connected = false;
  private readonly _changed = new Signal<this, void>(this);
}

/** The page's one change stream. */
export const feed = new LiveFeed();

export abstract class PollingWidget extends Widget {
  /** Fetch and redraw; called when the database changed, while visible. */
  protected abstract refresh(): Promise<void>;

  /** Whether to keep refreshing (a finished run stops). */
  protected get live(): boolean {
    return true;
  }

  /** Refresh now (after an action). */
  poke(): void {
    void this.tick(true);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.start();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.start();
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this.stop();
  }

  protected onBeforeDetach(msg: Message): void {
    this.stop();
    super.onBeforeDetach(msg);
  }

  dispose(): void {
    this.stop();
    super.dispose();
  }

  private start(): void {
    if (!this.release && this.isVisible) {
      this.release = feed.hold();
      feed.changed.connect(this.onChange, this);
    }
    this.poke();
  }

  private stop(): void {
    window.clearTimeout(this._timer);
    this._timer = undefined;
    feed.changed.disconnect(this.onChange, this);
    this.release?.();
    this.release = undefined;
  }

  private onChange(): void {
    void this.tick();
  }

  private async tick(force = false): Promise<void> {
    window.clearTimeout(this._timer);
    this._timer = undefined;
    if (this.isDisposed || !this.isVisible || (!force && !this.live)) {
      return;
    }
    if (this._busy) {
      this._again = true;
      return;
    }
    this._busy = true;
    try {
      await this.refresh();
    } finally {
      this._busy = false;
    }
    if (this._again) {
      this._again = false;
      return this.tick(true);
    }
    if (!feed.connected && !this.isDisposed && this.isVisible && this.live) {
      this._timer = window.setTimeout(() => void this.tick(), FALLBACK_MS); // stream down
    }
  }

  private _timer: number | undefined;
  private _busy = false;
  private _again = false;
  private release: (() => void) | undefined;
}
