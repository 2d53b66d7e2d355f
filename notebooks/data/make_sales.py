"""Make ``sales.db``, the small SQLite database ``04-data.ipynb`` queries.

300 orders from January to June 2026 (seeded, so every run writes the same rows):
``sales(id, sold_on, region, rep, product, units, unit_price)``. Run it from any
directory: ``python notebooks/data/make_sales.py`` rewrites the file beside it.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPS = {
    "north": ["ada", "grace"],
    "south": ["alan", "edsger"],
    "east": ["barbara", "donald"],
    "west": ["ken", "margaret"],
}
PRODUCTS = {"widget": 4.50, "gadget": 12.00, "gizmo": 27.25, "doohickey": 8.75}
ORDERS = 300


def rows(seed: int = 15) -> list[tuple[object, ...]]:
    rng = random.Random(seed)
    start = dt.date(2026, 1, 1)
    orders = []
    for _ in range(ORDERS):
        region = rng.choice(sorted(REPS))
        product = rng.choice(sorted(PRODUCTS))
        sold_on = (start + dt.timedelta(days=rng.randrange(181))).isoformat()
        rep = rng.choice(REPS[region])
        orders.append((sold_on, region, rep, product, rng.randint(1, 20), PRODUCTS[product]))
    orders.sort(key=lambda o: o[0])  # stable: ids follow the dates
    return [(i, *o) for i, o in enumerate(orders, start=1)]


def main(path: Path = HERE / "sales.db") -> Path:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute(
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, sold_on TEXT NOT NULL, "
            "region TEXT NOT NULL, rep TEXT NOT NULL, product TEXT NOT NULL, "
            "units INTEGER NOT NULL, unit_price REAL NOT NULL)"
        )
        con.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
        con.commit()
    finally:
        con.close()
    return path


if __name__ == "__main__":
    print(f"wrote {ORDERS} orders to {main()}")
