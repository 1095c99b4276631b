"""Per-table transforms: applied per Arrow batch on the lazy batch stream, for every source and destination.

- :mod:`dtaas_dagster.config.transforms` - the nine specs (``{type: ..., config: {...}}``, the DTaaS shape);
- :mod:`.expressions` - the filter_rows / add_column expression language (a parser, never ``eval``);
- :mod:`.arrow_eval` - evaluating an expression with ``pyarrow.compute``;
- :mod:`.columns` - the Arrow implementation of each transform;
- :mod:`.chain` - validating a table's chain against its Arrow schema and running it per batch;
- :mod:`.pushdown` - turning filter_rows conditions into a SQL Server WHERE clause with bound parameters;
- :mod:`.op_config` - the table step's op config (the YAML as default, editable in the launchpad).

See docs/transforms.md.
"""
