"""The configuration layer: ``dtaas.yaml`` -> frozen Pydantic models.

One module per concern: :mod:`.sources` (SQL Server), :mod:`.destinations`
(a union discriminated on ``type``), :mod:`.tasks` (tables, modes, batching,
retries, schedules), :mod:`.model` (the whole file and its cross-checks),
:mod:`.loading` (YAML and ``${ENV}`` interpolation) and :mod:`.errors`
(pydantic errors -> one line per problem, naming the field and the fix).
Matching ``tables:`` patterns against a catalog lives beside the catalog code,
in :mod:`dtaas_dagster.sqlserver.catalog`.
"""

from dtaas_dagster.config.base import CONFIG_ENV, DEFAULT_CONFIG_PATH, ConfigError
from dtaas_dagster.config.destinations import Destination, S3Destination, SnowflakeDestination
from dtaas_dagster.config.loading import load_config, parse_config
from dtaas_dagster.config.model import DtaasConfig
from dtaas_dagster.config.sources import SqlServerSource
from dtaas_dagster.config.tasks import (
    CdcConfig,
    Datetime2Handling,
    FreshnessConfig,
    RetryConfig,
    ScheduleConfig,
    SizeLimit,
    TableConfig,
    TaskConfig,
)

__all__ = [
    "CONFIG_ENV",
    "CdcConfig",
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "Datetime2Handling",
    "Destination",
    "DtaasConfig",
    "RetryConfig",
    "FreshnessConfig",
    "S3Destination",
    "ScheduleConfig",
    "SizeLimit",
    "SnowflakeDestination",
    "SqlServerSource",
    "TableConfig",
    "TaskConfig",
    "load_config",
    "parse_config",
]
