"""How workflows and run handles show in a notebook: as DAG widgets (with an SVG picture).

``wfkit.runs()`` shows as a table by itself (:class:`~..durable.handle.RunList`).
"""

from __future__ import annotations

from typing import Any

from ..durable.handle import RunHandle
from ..wire import SerializedWorkflow


def _workflow_bundle(wf: SerializedWorkflow, include: Any = None, exclude: Any = None) -> Any:
    from ..notebook.extension import _state
    from .widgets import DagView

    return DagView(wf, _state.get("kit"))._repr_mimebundle_(include=include, exclude=exclude)


def _handle_bundle(handle: RunHandle, include: Any = None, exclude: Any = None) -> Any:
    from ..notebook.extension import _state
    from .widgets import DagView

    kit = _state.get("kit")
    if kit is None:
        return None
    wf = SerializedWorkflow.from_json(handle._row().workflow_json)
    return DagView(wf, kit, handle.id)._repr_mimebundle_(include=include, exclude=exclude)


def register_displays(ip: Any) -> None:
    """Teach IPython to show workflows and run handles as DAG widgets."""
    formatter = ip.display_formatter.mimebundle_formatter
    formatter.for_type(SerializedWorkflow, _workflow_bundle)
    formatter.for_type(RunHandle, _handle_bundle)
