"""A claim takes at most ``limit`` runs, and concurrent claimers never share one
(SQLite and PostgreSQL; on PostgreSQL the picked ids must be computed once, not
rescanned per row with SKIP LOCKED)."""

from __future__ import annotations

import threading
import uuid

from thodare_jupyter.durable.store import Store

WF = '{"blocks":[{"id":"a","type":"t"}]}'


def test_a_claim_takes_at_most_its_limit_oldest_first(db_url: str) -> None:
    store = Store(db_url, f"c{uuid.uuid4().hex[:8]}")
    try:
        for i in range(30):
            store.runs.create_run("w", WF, {"i": i})
        first = store.runs.claim("w1", 16, 30.0, ["t"])
        rest = store.runs.claim("w2", 16, 30.0, ["t"])
    finally:
        store.dispose()
    assert sorted(r.input["i"] for r in first) == list(range(16))
    assert sorted(r.input["i"] for r in rest) == list(range(16, 30))
    assert {r.claimed_from for r in first + rest} == {"pending"}


def test_concurrent_claimers_never_share_a_run(db_url: str) -> None:
    stores = [Store(db_url, "shared-claims") for _ in range(4)]
    try:
        ids = {stores[0].runs.create_run("w", WF, {"i": i})[0] for i in range(200)}
        got: list[list[str]] = [[] for _ in stores]

        def claim(k: int) -> None:
            while batch := stores[k].runs.claim(f"w{k}", 5, 30.0, ["t"]):
                got[k].extend(r.id for r in batch)

        threads = [threading.Thread(target=claim, args=(k,)) for k in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for s in stores:
            s.dispose()
    taken = [run_id for g in got for run_id in g]
    assert len(taken) == len(set(taken)) == 200 and set(taken) == ids
