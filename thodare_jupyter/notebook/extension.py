"""``%load_ext thodare_jupyter``: bind ``wfkit``, register the magics, pick up connectors.

The default kit (``THODARE_DB``, else a SQLite file in the user data dir) is
created with its worker started, so runs left in flight by an earlier kernel
resume as soon as their connectors are defined again. Connectors defined in
cells (``@connector``, ``define_connector``) are registered after each cell;
defining one again replaces it. A comm to the JupyterLab panel is opened.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Any

from ..connectors import Connector
from ..kernel_db import publish as publish_db
from ..kit import Wfkit, create_wfkit

_state: dict[str, Any] = {}


def _register_new_connectors(ip: Any, kit: Wfkit) -> None:
    """After a cell: register every Connector bound in the user namespace that is new."""
    seen: dict[str, Connector] = _state.setdefault("seen", {})
    for value in list(ip.user_ns.values()):
        if isinstance(value, Connector) and seen.get(value.type) is not value:
            kit.register(value, replace=True)  # runs waiting for it can go on
            seen[value.type] = value


def _at_exit(fn: Callable[[], None]) -> None:
    """Call ``fn`` when the kernel exits, before Python waits for threads still running a
    step (so the hand-back is never stuck behind them); ``atexit`` where that hook is missing."""
    register = getattr(threading, "_register_atexit", None)
    try:
        register(fn)  # type: ignore[misc]
    except Exception:
        atexit.register(fn)


def load_ipython_extension(ip: Any) -> None:
    """Create and start the default kit as ``wfkit``; register magics, displays, the comm."""
    if "kit" in _state:  # %reload_ext / a second %load_ext: keep the running kit
        ip.user_ns["wfkit"] = _state["kit"]
        return
    from .channel import PanelChannels
    from .displays import register_displays
    from .magics import WorkflowMagics
    from .session import Session

    kit = create_wfkit().start()
    _at_exit(kit.close)  # a kernel's shutdown or restart hands its runs back at once
    publish_db(kit.store.url, kit.store.namespace)  # the panel shows this kernel's runs
    session = Session(kit, ip.user_ns)
    _state.update(kit=kit, session=session, channels=PanelChannels(session))
    ip.user_ns["wfkit"] = kit
    ip.register_magics(WorkflowMagics(ip, session))
    register_displays(ip)

    def after_cell(*_: Any) -> None:
        _register_new_connectors(ip, kit)

    _state["hook"] = after_cell
    ip.events.register("post_run_cell", after_cell)
    _register_new_connectors(ip, kit)


def unload_ipython_extension(ip: Any) -> None:
    """Stop the worker (runs in flight are handed back), close the comm and the kit."""
    kit: Wfkit | None = _state.pop("kit", None)
    hook = _state.pop("hook", None)
    channels = _state.pop("channels", None)
    _state.pop("seen", None)
    _state.pop("session", None)
    if hook is not None:
        ip.events.unregister("post_run_cell", hook)
    if channels is not None:
        channels.close()
    if kit is not None:
        kit.close()
