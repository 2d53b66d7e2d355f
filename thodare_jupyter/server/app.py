"""The extension app: its config (``c.ThodareServer.db_url``/``namespace``/``artifacts_url``)
and routes."""

from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from .handlers import ROUTES
from .runs import Runs


class ThodareServer(ExtensionApp):
    """Serves ``/thodare/api/…`` over the runs database the kernel's kit uses."""

    name = "thodare_jupyter.server"
    load_other_extensions = True

    db_url = Unicode(
        "", config=True, help="Database URL or SQLite path; default THODARE_DB or the user file."
    )
    namespace = Unicode("", config=True, help="Namespace; default THODARE_NAMESPACE or 'default'.")
    artifacts_url = Unicode(
        "",
        config=True,
        help="Artifact store (a folder or fsspec URL) the runs' tables and files are read from; "
        "default THODARE_ARTIFACTS, else the kit's default (beside the SQLite file).",
    )

    def initialize_settings(self) -> None:
        """Make the (lazily opened) runs backend available to the handlers."""
        self.runs = Runs(self.db_url or None, self.namespace or None, self.artifacts_url or None)
        self.settings["thodare_runs"] = self.runs

    def initialize_handlers(self) -> None:
        """The routes, under ``{base_url}thodare/api/``."""
        self.handlers.extend((f"/thodare/api/{path}", handler) for path, handler in ROUTES)

    async def stop_extension(self) -> None:
        """Close the database connections when the server stops."""
        self.runs.close()
