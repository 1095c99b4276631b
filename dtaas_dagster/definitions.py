"""The code location: the only place that loads the config and builds Definitions.

``DTAAS_CONFIG`` names the config file; without it the example ``dtaas.yaml``
at the repository root is used.
"""

from dtaas_dagster.config import load_config
from dtaas_dagster.factory import build_definitions

defs = build_definitions(load_config())
