"""How workflows and run handles show in a notebook: as DAG widgets (with an SVG picture).

``wfkit.runs()`` shows as a table by itself (:class:`~..durable.handle.RunList`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..durable.handle import RunHandle
from ..kit import Wfkit
from ..wire import SerializedWorkflow


def _workflow_bundle(
    kit: Wfkit, wf: SerializedWorkflow, include: Any = None, exclude: Any = None
) -> Any:
    from .widgets import DagView

    return DagView(wf, kit)._repr_mimebundle_(include=include, exclude=exclude)


def _handle_bundle(kit: Wfkit, handle: RunHandle, include: Any = None, exclude: Any = None) -> Any:
    from .widgets import DagView

    wf = SerializedWorkflow.from_json(handle._row().workflow_json)
    return DagView(wf, kit, handle.id)._repr_mimebundle_(include=include, exclude=exclude)


def register_displays(ip: Any, kit: Wfkit) -> None:
    """Teach IPython to show workflows and run handles as DAG widgets on ``kit``."""
    formatter = ip.display_formatter.mimebundle_formatter
    formatter.for_type(SerializedWorkflow, partial(_workflow_bundle, kit))
    formatter.for_type(RunHandle, partial(_handle_bundle, kit))


def unregister_displays(ip: Any) -> None:
    """Back to IPython's own displays (the extension is unloading)."""
    formatter = ip.display_formatter.mimebundle_formatter
    for cls in (SerializedWorkflow, RunHandle):
        formatter.pop(cls, None)
