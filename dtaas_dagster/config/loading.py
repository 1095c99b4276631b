"""Reading ``dtaas.yaml``: YAML with duplicate-key detection, ``${ENV}`` interpolation, validation.

``load_config()`` turns every failure into one :class:`ConfigError` whose
message has one line per problem, each naming the file, the field path
(``tasks.demo.parallel_tables``), what is wrong and the fix.

``path_template`` (and a Snowflake destination's ``database``, ``schema`` and
``table``), query variables' ``query`` and add_column ``value`` are not
env-interpolated: they have their own ``$name`` variables. Put environment
values into ``variables:`` and use them there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dtaas_dagster.config.base import CONFIG_ENV, DEFAULT_CONFIG_PATH, DOCS, ENV_NAME_RE, ConfigError
from dtaas_dagster.config.errors import error_lines, join_path
from dtaas_dagster.config.model import DtaasConfig

_ENV_REF = re.compile(r"\$\$\{|\$\{([^}:]*)(:-[^}]*)?\}")
# Fields with their own $name variables (${name} there is a variable, not the environment):
# S3 path_template, Snowflake database/schema/table name templates, queries, add_column values.
_NOT_INTERPOLATED = re.compile(
    r"^destinations\.[^.]+\.(path_template|database|schema|table)$"
    r"|^variables\.[^.]+\.query$"
    r"|^tasks\.[^.]+\.tables\[\d+\]\.transformations\[\d+\]\.config\.value$"
)


def _interpolate(value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """Replace ${VAR} / ${VAR:-default} in string values; ``$${`` is a literal ``${``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, join_path(path, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or _NOT_INTERPOLATED.match(path):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if not ENV_NAME_RE.match(name):
            problems.append(
                (path, f"${{{name}}} is not a valid environment variable name; use ${{NAME}} or ${{NAME:-default}}")
            )
            return ""
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default[2:]
        problems.append((path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}"))
        return ""

    return _ENV_REF.sub(replace, value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; remove one of them", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _config_location(path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    if path is not None:
        return Path(path), "the path given to load_config()"
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), f"environment variable {CONFIG_ENV}"
    return DEFAULT_CONFIG_PATH, "the default (the example dtaas.yaml)"


def load_config(path: str | os.PathLike[str] | None = None) -> DtaasConfig:
    """Load and validate the config: ``path``, else ``$DTAAS_CONFIG``, else the example ``dtaas.yaml``."""
    file, origin = _config_location(path)
    if not file.is_file():
        raise ConfigError(
            f"config file {file} not found (from {origin}); pass an existing YAML file to "
            f"load_config() or set {CONFIG_ENV} to its path"
        )
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            f"{file}: {where}invalid YAML: {exc.problem or exc}; fix the syntax "
            "(indentation, ':' after keys, quotes around values with ': ' or '#')"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}; fix the syntax") from None
    return parse_config(data, source=str(file))


def parse_config(data: Any, *, source: str = "<config>") -> DtaasConfig:
    """Validate already-parsed YAML data (interpolating ${VAR}); errors name ``source``."""
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{source}: the top level must be a mapping with keys sources, destinations, "
            f"variables, tasks (got {kind}); see {DOCS} for an example"
        )
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", problems)
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}: {m}" for p, m in problems))
    try:
        return DtaasConfig.model_validate(data)
    except ValidationError as exc:
        # Not chained: pydantic's text repeats the inputs, which may include a pasted secret.
        raise ConfigError("\n".join(f"{source}: {line}" for line in error_lines(exc, DtaasConfig))) from None
