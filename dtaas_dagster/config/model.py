"""The whole ``dtaas.yaml``: sources, destinations, variables, tasks, and their cross-checks."""

from __future__ import annotations

import re
import string
import typing
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from dtaas_dagster.config.base import ENV_NAME_RE, NAME_RE, Model, did_you_mean, fix, problems_error
from dtaas_dagster.config.destinations import Destination
from dtaas_dagster.config.sources import SqlServerSource
from dtaas_dagster.config.tasks import TaskConfig
from dtaas_dagster.config.transforms import AddColumn
from dtaas_dagster.config.variables import QueryVariableSpec
from dtaas_dagster.variables import BUILTIN_VARIABLES, VariableError, check_variable_value


def _suggest_name(name: str, kind: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return re.sub(r"[^a-z0-9_]", "_", snake).lstrip("0123456789_")[:63] or f"my_{kind}"


def _check_names(kind: str, names: typing.Iterable[str]) -> None:
    bad = [
        (
            n,
            f"{kind} name {n!r} must match ^[a-z][a-z0-9_]{{0,62}}$ (lowercase letter first, then lowercase "
            "letters, digits, _; it becomes a Dagster job/asset name); rename it, e.g. "
            f"{_suggest_name(n, kind)}",
        )
        for n in names
        if not NAME_RE.match(n)
    ]
    if bad:
        raise problems_error(*bad)


class DtaasConfig(Model):
    """The whole ``dtaas.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    sources: dict[str, SqlServerSource] = Field(
        min_length=1, description="SQL Server sources by name.", json_schema_extra=fix("define at least one source")
    )
    destinations: dict[str, Destination] = Field(
        min_length=1,
        description=("Destinations by name; each has a `type`: s3 or snowflake."),
        json_schema_extra=fix("define at least one destination"),
    )
    variables: dict[str, str | QueryVariableSpec] = Field(
        default_factory=dict,
        description=("Global variables usable as $name: text (static; may use ${ENV_VAR}) or {source, query} (query)."),
    )
    tasks: dict[str, TaskConfig] = Field(
        min_length=1,
        description="Tasks by name; each becomes a Dagster job.",
        json_schema_extra=fix("define at least one task"),
    )

    @field_validator("sources", "destinations", "tasks")
    @classmethod
    def _check_key_names(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        _check_names(info.field_name.rstrip("s"), value)
        return value

    @field_validator("variables")
    @classmethod
    def _check_variable_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = [
            (n, "must be a name like ETLCustomerId (letters, digits, _; not starting with a digit); rename it")
            for n in value
            if not ENV_NAME_RE.match(n)
        ]
        problems += [(n, "is a built-in variable; pick another name") for n in value if n in BUILTIN_VARIABLES]
        for name, text in value.items():
            if isinstance(text, str):
                try:
                    check_variable_value(name, text)
                except VariableError as exc:
                    problems.append((name, str(exc)))
        if problems:
            raise problems_error(*problems)
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> DtaasConfig:
        problems = [
            *self._reference_problems(),
            *self._template_problems(),
            *self._query_problems(),
            *self._transform_problems(),
        ]
        if problems:
            raise problems_error(*problems)
        for name, source in self.sources.items():
            source._config_path = f"sources.{name}"
        return self

    def _reference_problems(self) -> list[tuple[str, str]]:
        problems = []
        for task_name, task in self.tasks.items():
            for kind, ref, defined in (
                ("source", task.source, self.sources),
                ("destination", task.destination, self.destinations),
            ):
                if ref not in defined:
                    hint = did_you_mean(ref, defined)
                    problems.append(
                        (
                            f"tasks.{task_name}.{kind}",
                            (
                                f"task {task_name}: {kind} {ref!r} is not defined{hint}{' ' if hint else '; '}"
                                f"defined {kind}s: {', '.join(defined)}"
                            ),
                        )
                    )
        return problems

    @property
    def static_variables(self) -> dict[str, str]:
        return {n: v for n, v in self.variables.items() if isinstance(v, str)}

    @property
    def query_variables(self) -> dict[str, QueryVariableSpec]:
        return {n: v for n, v in self.variables.items() if isinstance(v, QueryVariableSpec)}

    def _query_problems(self) -> list[tuple[str, str]]:
        problems = []
        bindable = (*BUILTIN_VARIABLES, *self.static_variables)
        for name, query in self.query_variables.items():
            if query.source not in self.sources:
                hint = did_you_mean(query.source, self.sources)
                problems.append(
                    (
                        f"variables.{name}.source",
                        f"source {query.source!r} is not defined{hint}"
                        f"{' ' if hint else '; '}defined sources: {', '.join(self.sources)}",
                    )
                )
            for ref in query.references:
                if ref not in bindable:
                    why = (
                        "is a query variable (queries cannot use each other)"
                        if ref in self.variables
                        else f"is not a variable{did_you_mean(ref, bindable)}"
                    )
                    problems.append(
                        (
                            f"variables.{name}.query",
                            f"${ref} {why}; a query may use the built-ins "
                            f"({', '.join(BUILTIN_VARIABLES)}) and static variables",
                        )
                    )
        return problems

    def _transform_problems(self) -> list[tuple[str, str]]:
        """add_column values may use built-ins and global variables."""
        known = (*BUILTIN_VARIABLES, *self.variables)
        problems = []
        for task_name, task in self.tasks.items():
            for t_index, table in enumerate(task.tables):
                for index, spec in enumerate(getattr(table, "transformations", ())):
                    if not isinstance(spec, AddColumn) or not isinstance(spec.config.value, str):
                        continue
                    path = f"tasks.{task_name}.tables[{t_index}].transformations[{index}].config.value"
                    for ident in _identifiers(spec.config.value):
                        if ident not in known:
                            hint = did_you_mean(ident, known)
                            problems.append(
                                (
                                    path,
                                    f"unknown variable ${ident}{hint}{' ' if hint else '; '}known "
                                    f"variables: {', '.join(known)}",
                                )
                            )
        return problems

    def _template_problems(self) -> list[tuple[str, str]]:
        known = (*BUILTIN_VARIABLES, *self.variables)
        problems = []
        for name, destination in self.destinations.items():
            for field_name, template in destination.name_templates.items():
                for ident in string.Template(template).get_identifiers():
                    if ident not in known:
                        hint = did_you_mean(ident, known)
                        problems.append(
                            (
                                f"destinations.{name}.{field_name}",
                                (
                                    f"unknown variable ${ident}{hint}{' ' if hint else '; '}use a built-in "
                                    f"({', '.join(BUILTIN_VARIABLES)}) or define it under variables"
                                    + (f" (defined: {', '.join(self.variables)})" if self.variables else "")
                                ),
                            )
                        )
        return problems


def _identifiers(text: str) -> list[str]:
    template = string.Template(text)
    if not template.is_valid():
        return []
    return template.get_identifiers()
