"""The code location: the only place that loads the config and builds Definitions.

``DTAAS_CONFIG`` names the config file; without it the example ``dtaas.yaml``
at the repository root is used. Nothing is read at import time: Dagster calls
:func:`defs` when it loads the code location.
"""

import dagster as dg

from dtaas_dagster.config import load_config
from dtaas_dagster.factory import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
