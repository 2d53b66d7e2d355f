/**
 * The assistant chat: asks the active notebook's kernel for proposals, shows them,
 * and accepts or rejects them (the kernel then rewrites the `%%workflow` cell).
 */
import { JSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { h, svgNode } from './dom';
import { KernelLinks } from './kernel';

/** What the kernel proposes for one ask. */
export interface IProposal {
  key: string;
  workflow: string;
  ask: string;
  ops: JSONObject[];
  explanation: string;
  applied: boolean;
  summary: string;
  attempts: number;
  diff: string;
  svg_before: string;
  svg_after: string;
  changed: string[];
  /** Env names read by the blocks and params the patch adds or changes. */
  env_refs: string[];
}

export class ChatView extends Widget {
  /** `runFor(workflow)`: the run the user opened last, if it is of that workflow. */
  constructor(
    private readonly links: KernelLinks,
    private readonly runFor: (workflow: string) => string | null
  ) {
    super();
    this.addClass('thodare-chat');
    const form = h('form', 'thodare-chat-form');
    form.append(this.workflow, this.input, this.send);
    form.onsubmit = e => {
      e.preventDefault();
      void this.ask();
    };
    this.input.placeholder = 'Ask for a change, e.g. "post to #leads instead"';
    this.input.rows = 3;
    this.input.onkeydown = e => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        void this.ask();
      }
    };
    this.send.type = 'submit';
    this.node.append(h('div', 'thodare-heading', 'Assistant'), this.status, this.log, form);
    links.changed.connect(() => void this.refreshWorkflows());
  }

  /** Reload the workflow names of the active notebook's kernel. */
  async refreshWorkflows(): Promise<void> {
    const chosen = this.workflow.value;
    if (!this.links.currentKernel) {
      this.workflow.replaceChildren();
      this.status.textContent = 'Open a notebook with %load_ext thodare_jupyter to use the assistant.';
      this.node.dataset.connected = 'false';
      return;
    }
    try {
      const reply = await this.links.request('workflows');
      const names = (reply.workflows as JSONObject[]).map(w => String(w.name));
      this.workflow.replaceChildren( // at once: refreshes may overlap
        ...(reply.workflows as JSONObject[]).map(
          w => new Option(`${w.name} (${w.steps} steps)`, String(w.name))
        )
      );
      if (names.includes(chosen)) {
        this.workflow.value = chosen;
      }
      this.status.textContent = names.length ? '' : 'Define a workflow with %%workflow NAME first.';
      this.node.dataset.connected = 'true';
    } catch (e) {
      this.status.textContent = (e as Error).message;
      this.node.dataset.connected = 'false';
    }
  }

  private async ask(): Promise<void> {
    const ask = this.input.value.trim();
    const workflow = this.workflow.value;
    if (!ask || this.send.disabled) {
      return;
    }
    if (!workflow) {
      this.say('thodare-chat-error', 'Choose a workflow first.');
      return;
    }
    this.say('thodare-chat-user', `${workflow}: ${ask}`);
    this.input.value = '';
    this.send.disabled = true;
    const started = Date.now();
    const thinking = this.say('thodare-chat-thinking', 'thinking…');
    const timer = window.setInterval(() => {
      thinking.textContent = `thinking… ${Math.round((Date.now() - started) / 1000)} s`;
    }, 1000);
    try {
      const reply = await this.links.request('propose', {
        workflow,
        ask,
        run_id: this.runFor(workflow)
      });
      this.log.append(this.card(reply.proposal as unknown as IProposal));
    } catch (e) {
      this.say('thodare-chat-error', (e as Error).message);
    } finally {
      window.clearInterval(timer);
      thinking.remove();
      this.send.disabled = false;
      this.log.scrollTop = this.log.scrollHeight;
    }
  }

  private card(p: IProposal): HTMLElement {
    const card = h('div', 'thodare-proposal');
    card.dataset.key = p.key;
    card.dataset.applied = String(p.applied);
    card.dataset.state = 'proposed';
    const tries = p.attempts === 1 ? '1 attempt' : `${p.attempts} attempts`;
    card.append(
      h('div', 'thodare-proposal-title', `${p.workflow}: ${tries}`),
      h('p', 'thodare-explanation', p.explanation),
      // the same words as env_warning() in notebook/proposal.py
      ...(p.env_refs ?? []).map(name =>
        h('div', 'thodare-env-warning', `⚠ reads env ${name}: a secret value will be used when this runs`)
      ),
      h('pre', 'thodare-summary', p.summary)
    );
    const ops = h('details', 'thodare-ops');
    ops.append(h('summary', '', `${p.ops.length} operation(s)`));
    ops.append(h('pre', '', JSON.stringify(p.ops, null, 2)));
    const pictures = h('div', 'thodare-before-after');
    for (const [label, svg] of [['before', p.svg_before], ['after', p.svg_after]]) {
      const fig = h('figure', `thodare-${label}`);
      fig.append(h('figcaption', '', label));
      if (svg) {
        fig.append(svgNode(svg));
      }
      pictures.append(fig);
    }
    const diff = h('pre', 'thodare-diff');
    for (const line of p.diff.split('\n')) {
      const kind = line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
      diff.append(h('span', `thodare-diff-${kind}`, `${line}\n`));
    }
    card.append(ops, pictures, diff);
    if (p.applied && p.changed.length === 0) {
      card.dataset.state = 'empty';
      card.append(h('div', 'thodare-decision', 'Nothing to change.'));
    } else if (p.applied) {
      card.append(this.buttons(card, p));
    } else {
      card.append(h('div', 'thodare-chat-error', 'The assistant found no patch that applies.'));
    }
    return card;
  }

  private buttons(card: HTMLElement, p: IProposal): HTMLElement {
    const row = h('div', 'thodare-proposal-actions');
    const accept = h('button', 'jp-Button jp-mod-accept thodare-accept', 'Accept');
    const reject = h('button', 'jp-Button thodare-reject', 'Reject');
    const decide = async (action: 'accept' | 'reject') => {
      accept.disabled = reject.disabled = true;
      try {
        const reply = await this.links.request(action, { key: p.key });
        card.dataset.state = action === 'accept' ? 'accepted' : 'rejected';
        row.replaceChildren(
          h('span', 'thodare-decision', action === 'accept'
            ? `Accepted: ${reply.workflow} is now version ${reply.version}.`
            : 'Rejected.') // prettier-ignore
        );
      } catch (e) {
        accept.disabled = reject.disabled = false;
        row.append(h('div', 'thodare-chat-error', (e as Error).message));
      }
    };
    accept.onclick = () => void decide('accept');
    reject.onclick = () => void decide('reject');
    row.append(accept, reject);
    return row;
  }

  private say(className: string, text: string): HTMLElement {
    const line = h('div', `thodare-chat-message ${className}`, text);
    this.log.append(line);
    this.log.scrollTop = this.log.scrollHeight;
    return line;
  }

  private readonly workflow = h('select', 'thodare-chat-workflow');
  private readonly input = h('textarea', 'thodare-chat-input');
  private readonly send = h('button', 'jp-Button jp-mod-accept thodare-chat-send', 'Send');
  private readonly status = h('div', 'thodare-chat-status');
  private readonly log = h('div', 'thodare-chat-log');
}
