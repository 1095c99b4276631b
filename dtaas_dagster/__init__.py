"""dtaas_dagster: SQL Server to S3 (and Snowflake) as Dagster software-defined assets.

``dagster ... -m dtaas_dagster`` finds ``defs`` here: the ``@dg.definitions``
function of :mod:`dtaas_dagster.definitions`, imported lazily (PEP 562) so that
importing a submodule such as ``dtaas_dagster.config`` never loads Dagster's
definitions or the config.
"""

from typing import Any

__all__ = ["defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from dtaas_dagster.definitions import defs

        return defs
    raise AttributeError(f"module 'dtaas_dagster' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
