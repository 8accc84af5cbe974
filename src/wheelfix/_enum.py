"""The one enum base wheelfix uses (``enum.StrEnum`` is Python 3.11+; wheelfix supports 3.10)."""

from __future__ import annotations

from enum import Enum

__all__ = ["StrEnum"]


class StrEnum(str, Enum):
    """An enum whose members are their string values (in JSON, f-strings and comparisons with str)."""

    def __str__(self) -> str:
        return str(self.value)
