"""The jupyter-server extension: REST routes over the runs in the kernel's database.

Enabled by ``jupyter-config/server-config/thodare_jupyter.json`` (installed with
the package); the routes live under ``/thodare/api/`` behind Jupyter's auth.
"""

from __future__ import annotations

from .app import ThodareServer


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    return [{"module": "thodare_jupyter.server", "app": ThodareServer}]


__all__ = ["ThodareServer"]
