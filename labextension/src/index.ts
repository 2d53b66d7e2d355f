/**
 * The Workflows side panel: live runs (cancel, open a run's DAG and steps)
 * and the assistant chat bound to the active notebook's kernel.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { SplitPanel } from '@lumino/widgets';

import { IRunRef, IRunRow, currentKernel } from './api';
import { ChatView } from './chat';
import { installFallback } from './fallback';
import { KernelLinks } from './kernel';
import { RunView } from './runview';
import { RunsView } from './runs';

const ICON = new LabIcon({
  name: 'thodare:workflows',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="7" height="5" rx="1"/><rect x="15" y="9" width="7" height="5" rx="1"/>' +
    '<rect x="2" y="16" width="7" height="5" rx="1"/>' +
    '<path d="M9 5.5h3v12H9v-1h2v-4.5h4v-1h-4V6.5H9z"/></g></svg>'
});
const OPEN_RUN = 'thodare:open-run';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'thodare-jupyter:plugin',
  description: 'The Workflows side panel: runs, their DAGs, and the workflow assistant.',
  autoStart: true,
  requires: [ILabShell, INotebookTracker],
  activate: (app: JupyterFrontEnd, shell: ILabShell, tracker: INotebookTracker) => {
    installFallback(tracker); // a DAG output's last picture when its widget cannot show
    const links = new KernelLinks(tracker);
    const views = new Map<string, MainAreaWidget<RunView>>();
    let lastRun: IRunRow | null = null;

    // a run view reads the database of the kernel it was opened with (args.kernel; none:
    // the active notebook's), whichever notebook is active later
    app.commands.addCommand(OPEN_RUN, {
      label: 'Open Workflow Run',
      execute: args => {
        const ref: IRunRef = {
          id: String(args.id),
          kernel: args.kernel === undefined ? currentKernel() : (args.kernel as string | null)
        };
        const id = ref.id;
        const key = `${ref.kernel ?? ''}/${id}`;
        let widget = views.get(key);
        if (!widget || widget.isDisposed) {
          const open = (other: IRunRef) => void app.commands.execute(OPEN_RUN, { ...other });
          const view = new RunView(ref, open);
          widget = new MainAreaWidget({ content: view });
          widget.id = `thodare-run-${ref.kernel ?? 'server'}-${id}`;
          widget.title.label = `Run ${id.slice(0, 8)}`;
          widget.title.icon = ICON;
          widget.title.closable = true;
          views.set(key, widget);
          shell.add(widget, 'main');
        }
        shell.activateById(widget.id);
      }
    });

    const runs = new RunsView(run => {
      lastRun = run;
      void app.commands.execute(OPEN_RUN, { id: run.id });
    });
    const chat = new ChatView(links, w => (lastRun?.workflow === w ? lastRun.id : null));
    const panel = new SplitPanel({ orientation: 'vertical' });
    panel.id = 'thodare-workflows';
    panel.addClass('thodare-panel');
    panel.title.icon = ICON;
    panel.title.caption = 'Workflows';
    panel.addWidget(runs);
    panel.addWidget(chat);
    panel.setRelativeSizes([3, 2]);
    shell.add(panel, 'left', { rank: 600 });
    // the runs shown are those of the active notebook's kernel's database (when it told one)
    const follow = () => runs.follow(links.currentKernel?.id ?? null);
    tracker.currentChanged.connect(() => {
      follow();
      void chat.refreshWorkflows();
    });
    links.changed.connect(follow);
    follow();
    NotebookActions.executed.connect((_, { cell }) => {
      if (/^\s*%%workflow\s/.test(cell.model.sharedModel.getSource())) {
        void chat.refreshWorkflows(); // a workflow was (re)defined
      }
    });
    void chat.refreshWorkflows();
  }
};

export default plugin;
