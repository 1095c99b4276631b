"""The SQL engine of the SQL Server double: T-SQL on DuckDB with SQL Server's semantics."""

from .instance import DuckDbEngine

__all__ = ["DuckDbEngine"]
