/**
 * One run in the main area: its DAG coloured by step status, its steps (a `for_each`
 * step's items counted: `503/1000 · 2 failed`), and the details of the step clicked
 * (in the table or the DAG): approve/reject or send its event while it waits, its
 * params next to the values it ran with, its output (tables as their columns and
 * first rows, files with a download link), error and logs; links to its parent and child runs
 * (`run_workflow`), which `open` shows. It reads the database of the kernel it was opened
 * with, whichever notebook is active later.
 */
import {
  IProgress,
  IRun,
  IRunRef,
  ISent,
  IStep,
  approveStep,
  errorHeader,
  getRun,
  isTerminal,
  runSvg,
  sendStepEvent,
  stepLogs,
  stepStatus
} from './api';
import { clock, h, svgNode, took } from './dom';
import { drawOutput } from './outputs';
import { PollingWidget } from './poller';

export class RunView extends PollingWidget {
  constructor(
    readonly ref: IRunRef,
    private readonly open: (run: IRunRef) => void = () => undefined
  ) {
    super();
    this.addClass('thodare-run-view');
    this.node.dataset.runId = ref.id;
    this.node.append(this.head, this.error, this.dag, this.steps, this.output);
    this.dag.onclick = event => {
      const node = (event.target as Element).closest('g[data-block-id]');
      const id = node?.getAttribute('data-block-id');
      if (id && this.run?.steps.some(s => s.block_id === id)) {
        this.select(id);
      }
    };
  }

  protected get live(): boolean {
    return !this.run || !isTerminal(this.run.status);
  }

  protected async refresh(): Promise<void> {
    try {
      const [run, svg] = await Promise.all([getRun(this.ref), runSvg(this.ref)]);
      this.run = run;
      this.error.textContent = '';
      this.draw(run, svg);
    } catch (e) {
      this.error.textContent = (e as Error).message;
    }
  }

  private draw(run: IRun, svg: string): void {
    this.node.dataset.status = run.status;
    this.head.textContent = `${run.workflow ?? 'run'} · ${run.id} · ${run.status}`;
    if (run.error) {
      this.head.append(h('pre', 'thodare-error', errorHeader(run)));
    }
    this.drawLinks(run);
    if (svg !== this.svg) {
      this.svg = svg;
      this.dag.replaceChildren(svgNode(svg));
    }
    const table = h('table', 'thodare-steps');
    const head = table.createTHead().insertRow();
    for (const t of ['step', 'type', 'status', 'attempt', 'started', 'took', 'error']) {
      head.append(h('th', '', t));
    }
    const body = table.createTBody();
    for (const s of run.steps.filter(s => !s.block_id.includes('['))) {
      // a for_each step's items (`block[i]`) are counted on its row, not listed
      // an ended run's unfinished steps will not go on (as its DAG shows them)
      const status = stepStatus(run.status, s.status);
      const tr = body.insertRow();
      tr.dataset.blockId = s.block_id;
      tr.dataset.status = status;
      const shown = status !== 'waiting' || !s.waiting_for
        ? status
        : `waiting (${s.type === 'human_approval' ? 'approval' : s.waiting_for})`;
      const cells = [s.block_id, s.type, shown, String(s.attempt), clock(s.started_at),
        took(s.started_at, s.ended_at)]; // prettier-ignore
      for (const text of cells) {
        tr.append(h('td', '', text));
      }
      const items = run.progress?.[s.block_id];
      if (items) {
        tr.cells[2].append(drawItems(items));
      }
      tr.append(h('td', 'thodare-step-error', s.error ?? ''));
      tr.dataset.selected = String(s.block_id === this.selected);
      tr.onclick = () => this.select(s.block_id);
    }
    this.steps.replaceChildren(table);
    this.drawOutput();
  }

  /** Buttons that open the run's parent and its child runs (`run_workflow`). */
  private drawLinks(run: IRun): void {
    const links: HTMLButtonElement[] = [];
    const link = (className: string, runId: string, text: string, status?: string) => {
      const button = h('button', `jp-Button thodare-run-link ${className}`, text);
      button.dataset.runId = runId;
      if (status) {
        button.dataset.status = status;
      }
      button.title = `Open run ${runId}`;
      button.onclick = () => this.open({ id: runId, kernel: this.ref.kernel });
      links.push(button);
    };
    if (run.parent_run_id) {
      const parent = run.parent_run_id;
      const text = `parent run ${parent.slice(0, 8)} (step ${run.parent_block_id})`;
      link('thodare-run-parent-link', parent, text);
    }
    for (const c of run.children ?? []) {
      const what = `${c.block_id} → ${c.workflow ?? '-'}`;
      const text = `child run ${c.run_id.slice(0, 8)} (${what}): ${c.status}`;
      link('thodare-run-child-link', c.run_id, text, c.status);
    }
    if (links.length) {
      const box = h('div', 'thodare-run-links');
      box.append(...links);
      this.head.append(box);
    }
  }

  /** Show the details of step `blockId`. */
  private select(blockId: string): void {
    if (blockId !== this.selected) {
      this.notice.textContent = '';
    }
    this.selected = blockId;
    this.steps.querySelectorAll<HTMLTableRowElement>('tr[data-block-id]').forEach(tr => {
      tr.dataset.selected = String(tr.dataset.blockId === blockId);
    });
    this.drawOutput();
  }

  /**
   * The selected step's details: its timing, the approve/reject or send-event form
   * while it waits, its params (each template next to the value it ran with), output,
   * error and logs. Redrawn only when the step changed (a poll keeps the scroll and
   * what was typed in a form).
   */
  private drawOutput(): void {
    const found = this.run?.steps.find(s => s.block_id === this.selected);
    // as the steps table shows it: a step an ended run left waiting is canceled, not waiting
    const step = found && { ...found, status: stepStatus(this.run!.status, found.status) };
    const key = JSON.stringify([
      this.selected,
      step?.status,
      step?.attempt,
      step?.ended_at,
      step?.params ?? null,
      step?.output ?? null
    ]);
    if (key === this.shownOutput) {
      return;
    }
    this.shownOutput = key;
    this.output.dataset.blockId = step?.block_id ?? '';
    if (!step) {
      this.output.replaceChildren(
        h('div', 'thodare-hint', 'Click a step (in the table or the DAG) to see its details.')
      );
      return;
    }
    const title = h('div', 'thodare-output-title', `${step.block_id} · ${step.type} · ${step.status}`);
    const when = [`attempt ${step.attempt}`];
    if (step.started_at) {
      when.push(`started ${clock(step.started_at)}`);
    }
    if (step.ended_at) {
      when.push(`took ${took(step.started_at, step.ended_at)}`);
    }
    const parts: HTMLElement[] = [
      title,
      h('div', 'thodare-timing', when.join(' · ')),
      this.notice
    ];
    if (step.status === 'waiting' && step.waiting_for) {
      const form = this.drawWaitForm(step);
      if (form) {
        parts.push(form);
      }
    }
    parts.push(h('div', 'thodare-label', 'params'), this.drawParams(step));
    parts.push(h('div', 'thodare-label', 'output'));
    const none = step.output === undefined || step.output === null;
    parts.push(
      none
        ? h('div', 'thodare-hint', `No output (${step.status}).`)
        : drawOutput(step.output, this.ref)
    );
    if (step.error) {
      parts.push(h('pre', 'thodare-error', step.error));
    }
    const logs = h('pre', 'thodare-logs');
    parts.push(h('div', 'thodare-label', 'logs'), logs);
    this.output.replaceChildren(...parts);
    stepLogs(this.ref, step.block_id).then(
      lines => {
        logs.textContent = lines.length
          ? lines
              .map(l => `${l.block_id !== step.block_id ? l.block_id + ' ' : ''}#${l.attempt} ${l.stream}: ${l.text}`)
              .join('\n')
          : '(none)';
      },
      (e: Error) => {
        logs.textContent = e.message;
      }
    );
  }

  /** Each param: its template and the value the step ran with (hidden and env ones `***`). */
  private drawParams(step: IStep): HTMLElement {
    const templates = this.run?.templates?.[step.block_id.split('[')[0]] ?? {};
    const ran = step.params ?? null;
    const table = h('table', 'thodare-params');
    const head = table.createTHead().insertRow();
    for (const t of ran ? ['param', 'template', 'ran with'] : ['param', 'template']) {
      head.append(h('th', '', t));
    }
    const body = table.createTBody();
    const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
    for (const name of new Set([...Object.keys(templates), ...Object.keys(ran ?? {})])) {
      const tr = body.insertRow();
      tr.dataset.param = name;
      tr.append(h('td', 'thodare-param-name', name));
      tr.append(h('td', 'thodare-param-template', name in templates ? shown(templates[name]) : ''));
      if (ran) {
        // "=": it ran with the template as written
        const same = name in templates && shown(templates[name]) === shown(ran[name]);
        const td = h('td', 'thodare-param-value', same ? '=' : name in ran ? shown(ran[name]) : '');
        td.dataset.same = String(same);
        td.title = same ? 'ran with the template as written' : '';
        tr.append(td);
      }
    }
    return table;
  }

  /** Approve/Reject with a comment, or the event form with the resolved key prefilled. */
  private drawWaitForm(step: IStep): HTMLElement | null {
    const box = h('div', 'thodare-actions');
    const notice = this.notice;
    const done = (what: string) => (sent: ISent) => {
      const runs = `${sent.woke} run${sent.woke === 1 ? '' : 's'}`;
      notice.textContent = `${what}: woke ${runs}.`;
      this.poke();
    };
    const failed = (e: Error) => {
      notice.textContent = e.message;
    };
    if (step.type === 'human_approval') {
      const comment = h('input', 'thodare-comment');
      comment.placeholder = 'comment (optional)';
      const answer = (approved: boolean) => () =>
        approveStep(this.ref, step.block_id, approved, comment.value).then(
          sent => done(`${approved ? 'Approved' : 'Rejected'} as ${sent.by}`)(sent),
          failed
        );
      const approve = h('button', 'jp-Button jp-mod-styled jp-mod-accept thodare-approve', 'Approve');
      const reject = h('button', 'jp-Button jp-mod-styled jp-mod-reject thodare-reject', 'Reject');
      approve.onclick = answer(true);
      reject.onclick = answer(false);
      box.append(h('div', 'thodare-wait-what', 'waiting for an approval'), comment, approve, reject);
    } else if (step.type === 'wait_for_event') {
      const key = h('input', 'thodare-event-key');
      key.value = step.waiting_key ?? '';
      key.placeholder = '(no correlation key)';
      const payload = h('textarea', 'thodare-payload');
      payload.rows = 3;
      payload.placeholder = '{"key": "value"}';
      const send = h('button', 'jp-Button jp-mod-styled jp-mod-accept thodare-send', 'Send event');
      send.onclick = () => {
        let data: unknown = null;
        try {
          data = payload.value.trim() ? JSON.parse(payload.value) : null;
        } catch (e) {
          notice.textContent = `The payload is not JSON: ${(e as Error).message}`;
          return;
        }
        sendStepEvent(this.ref, step.block_id, key.value || null, data).then(
          done(`Sent ${step.waiting_for}`),
          failed
        );
      };
      const label = h('label', 'thodare-label', 'correlation key ');
      label.append(key);
      const what = h('div', 'thodare-wait-what', 'waiting for event ');
      what.append(h('code', '', step.waiting_for ?? ''));
      box.append(what, label, payload, send);
    } else {
      return null;
    }
    return box;
  }

  private run: IRun | undefined;
  private svg = '';
  private selected = '';
  private shownOutput = '';
  private readonly head = h('div', 'thodare-run-head');
  private readonly error = h('div', 'thodare-error');
  private readonly dag = h('div', 'thodare-run-dag');
  private readonly steps = h('div', 'thodare-run-steps');
  private readonly output = h('div', 'thodare-run-output');
  /** What the last action on the selected step did (kept while the step is redrawn). */
  private readonly notice = h('div', 'thodare-notice');
}

/** " · 503/1000" items ended of all, then " · 2 failed" (in red) when some failed. */
function drawItems(p: IProgress): HTMLElement {
  const span = h('span', 'thodare-step-items', ` · ${p.ended}/${p.total}`);
  span.dataset.ended = String(p.ended);
  span.dataset.total = String(p.total);
  span.dataset.failed = String(p.failed);
  span.title = `${p.ended} of ${p.total} items ended, ${p.failed} failed`;
  if (p.failed) {
    span.append(h('span', 'thodare-step-failed', ` · ${p.failed} failed`));
  }
  return span;
}
