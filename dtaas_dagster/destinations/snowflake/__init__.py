"""The Snowflake destination (``type: snowflake``): staged COPY for snapshots, ordered MERGE for CDC.

Modules, in the order a load uses them: :mod:`.names` (identifier policy,
target names from templates), :mod:`.types` (Arrow -> Snowflake types, drift),
:mod:`.sql` (every statement, named), :mod:`.session` (statements, transactions,
errors), :mod:`.connection` (``dagster_snowflake.SnowflakeResource``, imported
lazily), :mod:`.tables` (schema objects, drift, left-overs), :mod:`.spool` and
:mod:`.staging` (Parquet files, PUT, COPY), :mod:`.state` (the control table),
:mod:`.load` (one load, end to end), :mod:`.reader` and :mod:`.io_manager`.

Importing this package does not import ``dagster_snowflake`` or the connector
(about 7 s and 270 MB); only opening a connection does. See docs/snowflake.md.
"""

from dtaas_dagster.destinations.snowflake.io_manager import SnowflakeIOManager

__all__ = ["SnowflakeIOManager"]
