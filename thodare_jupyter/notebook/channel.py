"""The kernel's side of the JupyterLab panel: one comm, ``target_name="thodare"``.

The kernel opens it when the extension loads; the lab extension keeps it. A page
opened later (a browser reload) opens its own to the same target.
Requests ``{"id", "action", ...}`` get ``{"reply_to": id, "ok", ...}``:
``workflows``, ``propose`` (``workflow``, ``ask``, ``run_id``), ``accept`` and
``reject`` (``key``). Events the kernel sends: ``{"event": "rewrite_cell",
"workflow", "source"}``; the front end answers ``{"action": "cell_rewritten",
"workflow", "found"}``. A front end without the extension closes the comm at
once, and the kernel then knows nobody can rewrite a cell.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import ThodareError, UnknownPanelAction
from .session import Session, proposal_view_data

TARGET = "thodare"
PROTOCOL = 1
log = logging.getLogger("thodare.notebook")


class PanelChannel:
    """One comm to a lab front end, serving the panel's requests on a session."""

    def __init__(self, session: Session, comm: Any) -> None:
        from comm import DummyComm

        self.session = session
        self.comm = comm
        self.comm.on_msg(self._on_msg)
        self.comm.on_close(self._on_close)
        if not isinstance(self.comm, DummyComm):  # outside a kernel nobody listens
            session.rewriters.append(self.rewrite)

    @classmethod
    def open(cls, session: Session) -> PanelChannel:
        """Open a comm to the front end (which keeps it when it has the lab extension)."""
        from comm import create_comm

        return cls(session, create_comm(target_name=TARGET, data={"protocol": PROTOCOL}))

    def rewrite(self, name: str, source: str) -> None:
        """Ask the front end to put ``source`` in the cell of ``%%workflow NAME``."""
        self.comm.send({"event": "rewrite_cell", "workflow": name, "source": source})

    def close(self) -> None:
        """Close the comm (the extension is unloading)."""
        self._on_close(None)
        self.comm.close()

    def _on_close(self, _msg: Any) -> None:
        if self.rewrite in self.session.rewriters:
            self.session.rewriters.remove(self.rewrite)

    def _on_msg(self, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data", {}) or {}
        action = data.get("action")
        if action == "cell_rewritten":
            self.session.cell_rewritten(str(data.get("workflow")), bool(data.get("found")))
            return
        if action == "propose":  # an LLM call: seconds, so never on the kernel's main thread
            threading.Thread(target=self._answer, args=(data,), daemon=True).start()
        else:
            self._answer(data)

    def _answer(self, data: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"reply_to": data.get("id")}
        try:
            reply |= {"ok": True, **self._serve(data)}
        except ThodareError as e:
            reply |= {"ok": False, "error": str(e)}
        except Exception as e:  # a bug of ours: still answer, so the panel never hangs
            log.exception("panel request failed")
            reply |= {"ok": False, "error": f"{type(e).__name__}: {e}"}
        self.comm.send(reply)

    def _serve(self, data: dict[str, Any]) -> dict[str, Any]:
        s, action = self.session, data.get("action")
        if action == "workflows":
            return {"workflows": [{"name": n, "steps": len(wf.blocks) - 1}
                                  for n, wf in sorted(s.kit.workflows.items())]}  # fmt: skip
        if action == "propose":
            pending = s.propose(str(data.get("workflow", "")), str(data.get("ask", "")),
                                run_id=data.get("run_id") or None)  # fmt: skip
            return {"proposal": proposal_view_data(pending)}
        if action == "accept":
            key = str(data.get("key", ""))
            name = s.pending[key].name if key in s.pending else None
            version = s.accept(key)
            return {"workflow": name, "version": version.version}
        if action == "reject":
            s.reject(str(data.get("key", "")))
            return {}
        raise UnknownPanelAction(action)


class PanelChannels:
    """Every front end's channel: the kernel's own, and those pages open to ``TARGET``."""

    def __init__(self, session: Session) -> None:
        from comm import get_comm_manager

        self.session = session
        self.channels = [PanelChannel.open(session)]
        self._manager = get_comm_manager()
        self._manager.register_target(TARGET, self._opened)

    def _opened(self, comm: Any, msg: dict[str, Any]) -> None:
        protocol = (msg.get("content", {}).get("data") or {}).get("protocol")
        if protocol != PROTOCOL:
            comm.close({"error": f"protocol {protocol} is not {PROTOCOL}"})
            return
        self.channels.append(PanelChannel(self.session, comm))

    def close(self) -> None:
        """Close every comm and stop accepting new ones (the extension is unloading)."""
        self._manager.unregister_target(TARGET, self._opened)
        for channel in self.channels:
            channel.close()
        self.channels.clear()
