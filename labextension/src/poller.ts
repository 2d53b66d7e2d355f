/**
 * A widget that refreshes itself every second, only while it is visible.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

export abstract class PollingWidget extends Widget {
  /** Fetch and redraw; called about once a second while visible. */
  protected abstract refresh(): Promise<void>;

  /** Whether to keep polling (a finished run stops). */
  protected get live(): boolean {
    return true;
  }

  /** Refresh now (after an action), then keep the rhythm. */
  poke(): void {
    void this.tick(true);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.poke();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.poke();
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

  private stop(): void {
    window.clearTimeout(this._timer);
    this._timer = undefined;
  }

  private async tick(force = false): Promise<void> {
    this.stop();
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
    if (!this.isDisposed && this.isVisible && this.live) {
      this._timer = window.setTimeout(() => void this.tick(), 1000);
    }
  }

  private _timer: number | undefined;
  private _busy = false;
  private _again = false;
}
