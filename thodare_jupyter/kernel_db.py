"""Which database a notebook kernel's kit uses, told to the Jupyter server, never the browser.

The kernel writes ``thodare-db-<kernel id>.json`` (mode 0600, like its own
connection file, beside it in Jupyter's runtime dir): its database URL, password
and all, and namespace. The server extension reads it when the panel asks for
the runs "of kernel K"; the browser only ever sends a kernel id and sees the URL
with its password masked.
"""

from __future__ import annotations

import atexit
import json
import os
import re
from pathlib import Path
from typing import NamedTuple

_KERNEL_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_CONNECTION = re.compile(r"kernel-(.+)\.json")


class KernelDb(NamedTuple):
    """A kernel's database URL (with its password) and namespace."""

    url: str
    namespace: str


def db_file(runtime_dir: str | os.PathLike[str], kernel_id: str) -> Path | None:
    """Where kernel ``kernel_id`` tells its database; None for an id that cannot be one."""
    if not _KERNEL_ID.fullmatch(kernel_id):
        return None
    return Path(runtime_dir) / f"thodare-db-{kernel_id}.json"


def publish(url: str, namespace: str) -> Path | None:
    """In a kernel: write its database to the runtime dir (0600); None outside a kernel."""
    from IPython import get_ipython

    if getattr(get_ipython(), "kernel", None) is None:  # a plain shell: importing ipykernel's
        return None  # connect module would make comms act as if a kernel were there
    try:
        from ipykernel.connect import get_connection_file

        connection = Path(get_connection_file())
    except Exception:  # not an ipykernel, or no connection file
        return None
    m = _CONNECTION.fullmatch(connection.name)
    path = db_file(connection.parent, m[1]) if m else None
    if path is None:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"url": url, "namespace": namespace}, f)
    atexit.register(path.unlink, missing_ok=True)  # gone with the kernel
    return path


def read(runtime_dir: str | os.PathLike[str], kernel_id: str) -> KernelDb | None:
    """In the server: kernel ``kernel_id``'s database, or None when it told none (it never
    loaded the extension) or its file is readable by others (then it is not trusted)."""
    path = db_file(runtime_dir, kernel_id)
    try:
        if path is None or path.stat().st_mode & 0o077:
            return None
        data = json.loads(path.read_text())
        return KernelDb(str(data["url"]), str(data["namespace"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
