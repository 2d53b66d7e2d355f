"""Refresh the DAG pictures (``image/svg+xml``) saved in the example notebooks.

nbval compares a notebook's saved SVG outputs with a fresh run's, so a change to
the drawing (``thodare_jupyter/drawing/``) needs the saved pictures redrawn. This
runs each notebook (a fresh SQLite file; for ``03-postgres`` a fresh PostgreSQL
schema at ``THODARE_TEST_PG``) and writes back only the SVG of each output that
has one, and drops saved widget state (``metadata.widgets``: with it nbconvert draws the
widget view, not the picture), leaving every other byte of the notebook as it was.

    .venv/bin/python tools/refresh_notebook_svgs.py [notebooks/NN-name.ipynb ...]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
PG_BASE = os.environ.get("THODARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SVG = "image/svg+xml"


def _executed(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def refresh(path: Path) -> int:
    """Redraw ``path``'s saved SVG outputs, drop its widget state; returns how many changed."""
    env = {"THODARE_DB": str(Path(tempfile.mkdtemp(prefix="thodare-svgs-")) / "runs.db")}
    schema = None
    if "postgres" in path.name:
        import psycopg

        schema = f"thodare_svgs_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        env["THODARE_PG_URL"] = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    try:
        fresh = _executed(path, env)
    finally:
        if schema is not None:
            with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    saved = json.loads(path.read_text())
    changed = 0
    for cell, new in zip(saved["cells"], fresh.cells, strict=True):
        for out, got in zip(cell.get("outputs", []), new.get("outputs", []), strict=False):
            svg = got.get("data", {}).get(SVG)
            if SVG in out.get("data", {}) and svg is not None and out["data"][SVG] != svg:
                out["data"][SVG] = svg.splitlines(keepends=True)
                changed += 1
    if saved["metadata"].pop("widgets", None) is not None:
        changed += 1
    if changed:
        path.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(args: list[str]) -> None:
    paths = [Path(a) for a in args] or sorted((REPO / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"{path}: {refresh(path)} picture(s) redrawn")


if __name__ == "__main__":
    main(sys.argv[1:])
