"""The code location: the only place that loads the config and builds Definitions.

``DTAAS_CONFIG`` names the config file; without it the example ``dtaas.yaml``
at the repository root is used. ``DTAAS_LOG_FORMAT=json`` switches the runs'
and the product's logs to JSON lines (:mod:`dtaas_dagster.logs`). Nothing is
read at import time: Dagster calls :func:`defs` when it loads the code location.
"""

import dagster as dg

from dtaas_dagster.config import ConfigError, load_config
from dtaas_dagster.factory import build_definitions
from dtaas_dagster.logs import LogFormatError, configure_process_logging, log_format, run_loggers


@dg.definitions
def defs() -> dg.Definitions:
    try:
        format_ = log_format()
    except LogFormatError as exc:
        raise ConfigError(str(exc)) from None
    configure_process_logging(format_)
    built = build_definitions(load_config())
    loggers = run_loggers(format_)
    return dg.Definitions.merge(built, dg.Definitions(loggers=loggers)) if loggers else built
