"""Who may see and set a param: ``Hidden[T]`` and ``UserOnly[T]`` markers.

A hidden param (a token, a key) is never shown to the LLM and never accepted
from an edit op; a user-only param is shown but only a person may set it.
Use them as type annotations on a connector's params model::

    class SlackParams(BaseModel):
        channel: str
        access_token: Hidden[str]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

from pydantic.fields import FieldInfo

Visibility = Literal["user-or-llm", "user-only", "hidden"]


@dataclass(frozen=True)
class VisibilityMark:
    """The metadata ``Hidden``/``UserOnly`` attach to an annotation."""

    level: Visibility


T = TypeVar("T")
Hidden = Annotated[T, VisibilityMark("hidden")]
UserOnly = Annotated[T, VisibilityMark("user-only")]


def visibility_of(field: FieldInfo) -> Visibility:
    """The visibility of a pydantic field (``user-or-llm`` unless marked)."""
    for meta in field.metadata:
        if isinstance(meta, VisibilityMark):
            return meta.level
    return "user-or-llm"
