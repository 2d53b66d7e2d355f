"""The catalog: which connector types exist, and how the LLM may see them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import ConnectorConflict, UnknownConnector
from .connector import Connector


class Catalog:
    """A registry of connectors by type; starts with the builtin blocks.

    Args:
        *connectors: Connectors to register right away.
        builtins: Include the builtin blocks (``http``, ``slack``, waits, ...).
    """

    def __init__(self, *connectors: Connector, builtins: bool = True) -> None:
        self._by_type: dict[str, Connector] = {}
        if builtins:
            from .builtins import BUILTINS

            self.register(*BUILTINS)
        self.register(*connectors)

    def register(self, *connectors: Connector, replace: bool = False) -> Catalog:
        """Add connectors; a different one under a taken type raises unless ``replace``."""
        for c in connectors:
            if not isinstance(c, Connector):
                raise TypeError(
                    f"Catalog.register takes connectors (define_connector / @connector), got {c!r}."
                )
            known = self._by_type.get(c.type)
            if known is not None and known is not c and not replace:
                raise ConnectorConflict(c.type)
            self._by_type[c.type] = c
        return self

    def get(self, type_: str) -> Connector:
        """The connector for ``type_``; raises :class:`UnknownConnector` listing the known ones."""
        found = self._by_type.get(type_)
        if found is None:
            raise UnknownConnector(type_, list(self._by_type))
        return found

    def find(self, type_: str) -> Connector | None:
        """The connector for ``type_``, or ``None``."""
        return self._by_type.get(type_)

    def types(self) -> list[str]:
        """Every registered type, sorted."""
        return sorted(self._by_type)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._by_type

    def __iter__(self) -> Iterator[Connector]:
        return iter(self._by_type.values())

    def __len__(self) -> int:
        return len(self._by_type)

    def __repr__(self) -> str:
        return f"Catalog({', '.join(self.types())})"

    def describe_for_llm(self) -> list[dict[str, Any]]:
        """Every connector as the LLM may see it (hidden params removed)."""
        return [self._by_type[t].describe_for_llm() for t in self.types()]
