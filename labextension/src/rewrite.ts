/**
 * Replace the source of a `%%workflow NAME` cell (after an accepted proposal).
 */
import { CodeCell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

/** Whether `source` is a `%%workflow NAME` cell (its first line, stripped). */
export function isWorkflowCell(source: string, name: string): boolean {
  const first = source.split('\n', 1)[0].trim().split(/\s+/);
  return first.length === 2 && first[0] === '%%workflow' && first[1] === name;
}

/**
 * Set the source of the notebook's `%%workflow NAME` code cell and run it again, so its
 * output shows the new DAG; false when the notebook has no such cell.
 */
export function rewriteCell(panel: NotebookPanel, name: string, source: string): boolean {
  for (const cell of panel.content.widgets) {
    const shared = cell.model.sharedModel;
    if (cell instanceof CodeCell && isWorkflowCell(shared.getSource(), name)) {
      shared.setSource(source);
      void CodeCell.execute(cell, panel.sessionContext);
      return true;
    }
  }
  return false;
}
