"""The SQL engine of the SQL Server double: T-SQL on DuckDB with SQL Server's semantics."""

import warnings

# DuckDB warns that DB-API Arrow output copies rows; the engine streams in batches anyway.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")

from .instance import DuckDbEngine  # noqa: E402 - after the filter, which must come first

__all__ = ["DuckDbEngine"]
