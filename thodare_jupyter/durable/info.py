"""Which database a kit uses, said plainly: the URL (password masked), the backend,
the namespace, the schema version, the runs by status and the live workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from ..redaction import safe_url
from ..wire import RUN_STATUSES
from .schema import runs
from .store import Store


@dataclass(frozen=True)
class DatabaseInfo:
    """What ``thodare info`` prints and the panel's header says; never a password."""

    url: str
    backend: str
    namespace: str
    schema_version: str
    runs: dict[str, int]
    live_workers: int

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready values."""
        return asdict(self)


def database_info(store: Store) -> DatabaseInfo:
    """The facts of ``store``'s database and namespace (three short reads)."""
    count = sa.select(runs.c.status, sa.func.count()).where(runs.c.namespace == store.namespace)
    with store.read() as c:
        counts = {str(s): int(n) for s, n in c.execute(count.group_by(runs.c.status)).all()}
    return DatabaseInfo(
        url=safe_url(store.url),
        backend="SQLite" if store.is_sqlite else "PostgreSQL",
        namespace=store.namespace,
        schema_version=", ".join(store.schema_versions()),
        runs={s: int(counts.get(s, 0)) for s in RUN_STATUSES},
        live_workers=len(store.workers.list_workers()),
    )
