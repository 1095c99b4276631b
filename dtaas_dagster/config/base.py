"""Shared pieces of the config models: the base model, names, hints and ConfigError.

Every model is frozen and forbids unknown keys (a typo must not silently fall
back to a default). A field may carry a ``fix`` hint in ``json_schema_extra``
(:func:`fix`); :mod:`dtaas_dagster.config.errors` puts it into the message.
Validators that find several problems raise :func:`problems_error`, whose
``(sub-path, message)`` pairs become one message line each.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

CONFIG_ENV = "DTAAS_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "dtaas.yaml"
DOCS = "docs/configuration.md"

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the fix."""


def fix(hint: str) -> dict[str, Any]:
    """A field's fix hint (``json_schema_extra``), shown in its error messages."""
    return {"fix": hint}


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean '{lowered[match[0]]}'?" if match else ""


def problems_error(*problems: tuple[str, str]) -> PydanticCustomError:
    """An error carrying ``(sub-path, message)`` pairs relative to the validated field."""
    return PydanticCustomError("dtaas_problems", "{problems}", {"problems": list(problems)})


class Model(BaseModel):
    """Frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
