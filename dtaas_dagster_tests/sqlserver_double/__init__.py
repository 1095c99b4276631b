"""The SQL Server double: a TDS 7.4 server backed by DuckDB, for tests.

``DoubleServer`` is imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import DoubleServer

__all__ = ["DoubleServer"]


def __getattr__(name: str) -> Any:
    if name == "DoubleServer":
        from .server import DoubleServer

        return DoubleServer
    raise AttributeError(name)
