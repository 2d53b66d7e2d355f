"""Connectors: typed steps, their visibility markers, and the catalog."""

from .catalog import Catalog
from .connector import Connector, ParamSpec, RetryPolicy, connector, define_connector
from .context import StepContext
from .visibility import Hidden, UserOnly, Visibility, visibility_of
from .waits import duration_seconds, wait_output

__all__ = [
    "Catalog",
    "Connector",
    "Hidden",
    "ParamSpec",
    "RetryPolicy",
    "StepContext",
    "UserOnly",
    "Visibility",
    "connector",
    "define_connector",
    "duration_seconds",
    "visibility_of",
    "wait_output",
]
