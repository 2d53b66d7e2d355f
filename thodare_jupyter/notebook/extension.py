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
from .channel import PanelChannels
from .displays import register_displays, unregister_displays
from .magics import WorkflowMagics
from .session import Session


class Extension:
    """What ``%load_ext`` made for one shell: the kit, its session, the panel's comms and
    the after-cell hook that registers the connectors cells define."""

    def __init__(self, ip: Any, kit: Wfkit) -> None:
        self.ip, self.kit = ip, kit
        self.session = Session(kit, ip.user_ns)
        self.channels = PanelChannels(self.session)
        self.seen: dict[str, Connector] = {}
        """The connector last registered for each type, so a cell run again replaces it."""
        ip.user_ns["wfkit"] = kit
        ip.register_magics(WorkflowMagics(ip, self.session))
        register_displays(ip, kit)
        ip.events.register("post_run_cell", self.after_cell)
        self.after_cell()

    def after_cell(self, *_: Any) -> None:
        """Register every Connector bound in the user namespace that is new."""
        for value in list(self.ip.user_ns.values()):
            if isinstance(value, Connector) and self.seen.get(value.type) is not value:
                self.kit.register(value, replace=True)  # runs waiting for it can go on
                self.seen[value.type] = value

    def close(self) -> None:
        """Stop the hook and the displays, close the comms, then the kit (runs handed back)."""
        self.ip.events.unregister("post_run_cell", self.after_cell)
        unregister_displays(self.ip)
        self.channels.close()
        self.kit.close()


_loaded: Extension | None = None
"""The extension loaded in this process. IPython passes ``unload_ipython_extension`` only
the shell, so this is how it finds what to close; a second load finds it and keeps its kit."""


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
    global _loaded
    if _loaded is not None:  # loaded already (and not unloaded): keep the running kit
        ip.user_ns["wfkit"] = _loaded.kit
        return
    kit = create_wfkit().start()
    _at_exit(kit.close)  # a kernel's shutdown or restart hands its runs back at once
    publish_db(kit.store.url, kit.store.namespace)  # the panel shows this kernel's runs
    _loaded = Extension(ip, kit)


def unload_ipython_extension(ip: Any) -> None:
    """Stop the worker (runs in flight are handed back), close the comm and the kit."""
    global _loaded
    if _loaded is not None:
        loaded, _loaded = _loaded, None
        loaded.close()
