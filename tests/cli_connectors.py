"""Connectors for the ``thodare worker`` subprocess tests in ``test_cli.py``.

The worker imports this file (``--import tests/cli_connectors.py``) and
serves every ``Connector`` among its globals.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from thodare_jupyter import define_connector


class GreetParams(BaseModel):
    name: str


class GreetOut(BaseModel):
    text: str
    pid: int  # which process ran the step


greet = define_connector(
    type="cli-greet",
    params=GreetParams,
    outputs=GreetOut,
    run=lambda p: {"text": f"hello {p.name}", "pid": os.getpid()},
)


class NapParams(BaseModel):
    seconds: float


class NapOut(BaseModel):
    slept: float


async def _nap(p: NapParams) -> NapOut:
    await asyncio.sleep(p.seconds)
    return NapOut(slept=p.seconds)


nap = define_connector(type="cli-nap", params=NapParams, outputs=NapOut, run=_nap)
