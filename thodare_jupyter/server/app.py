"""The extension app: its config (``c.ThodareServer.db_url``/``namespace``/``artifacts_url``)
and routes."""

from __future__ import annotations

from jupyter_core.paths import jupyter_runtime_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Unicode

from .handlers import ROUTES
from .runs import Runs
from .sources import Sources


class ThodareServer(ExtensionApp):
    """Serves ``/thodare/api/…`` over the runs database of the panel's kernel (when it
    told one, see :mod:`.sources`) or the configured one."""

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
        runs = Runs(self.db_url or None, self.namespace or None, self.artifacts_url or None)
        kernels = getattr(self.serverapp, "kernel_manager", None)
        runtime_dir = getattr(kernels, "connection_dir", "") or jupyter_runtime_dir()
        self.sources = Sources(runs, runtime_dir, self.artifacts_url or None)
        self.settings["thodare_sources"] = self.sources

    def initialize_handlers(self) -> None:
        """The routes, under ``{base_url}thodare/api/``."""
        self.handlers.extend((f"/thodare/api/{path}", handler) for path, handler in ROUTES)

    async def stop_extension(self) -> None:
        """Close the database connections when the server stops."""
        self.sources.close()
