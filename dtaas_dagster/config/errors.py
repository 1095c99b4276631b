"""Pydantic errors -> one line each: the field path, what is wrong, and the fix.

Range checks use ``Field(ge=..., le=...)`` and each field may carry a ``fix``
hint; :func:`error_lines` walks the model types along pydantic's error ``loc``
to find the field, its bounds and its hint, so messages stay uniform without a
custom validator per field. Values of invalid inputs are echoed only for short
scalars, never for ``odbc_extra`` values or unknown keys (a pasted
``password: ...``).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, Tag, ValidationError

from dtaas_dagster.config.base import DOCS, did_you_mean
from dtaas_dagster.config.destinations import SnowflakeDestination
from dtaas_dagster.config.sources import SqlServerSource

_SECRET_KEYS = ("password", "pwd", "private_key", "passphrase", "private_key_passphrase", "token")


def join_path(path: str, sub: str) -> str:
    if not path:
        return sub
    return f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType) and type(None) in typing.get_args(tp):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _union_member(tp: Any, tag: Any) -> Any | None:
    """The member of a tagged union that pydantic names ``tag`` in an error loc."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return None
    for member in typing.get_args(tp):
        tags = [m.tag for m in getattr(member, "__metadata__", ()) if isinstance(m, Tag)]
        if tag in tags or getattr(_unwrap(member), "__name__", None) == tag:
            return member
    return None


def _walk(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[str, type[BaseModel] | None, Any]:
    """Display path of ``loc``, the model that holds its last key, and the nearest field's FieldInfo."""
    tp: Any = root
    path, model, field = "", None, None
    for part in loc:
        tp = _unwrap(tp)
        member = _union_member(tp, part)
        if member is not None:
            tp = member
            continue
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            model, field = tp, tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field else None
        elif origin is dict:
            tp, model = typing.get_args(tp)[1], None
        elif origin is list:
            tp, model = typing.get_args(tp)[0], None
            path = f"{path}[{part}]"
            continue
        else:
            tp, model = None, None
        path = join_path(path, str(part))
    return path, model, field


def _shown(value: Any, path: str) -> str:
    if (
        "odbc_extra" in path
        or "connection_args" in path
        or not isinstance(value, (str, int, float, bool))
        or len(repr(value)) > 60
    ):
        return ""
    return f" (got {value!r})"


def _bounds(field: Any) -> str:
    limits = {
        type(m).__name__: getattr(m, type(m).__name__.lower())
        for m in getattr(field, "metadata", ())
        if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")
    }
    low = f"at least {limits['Ge']}" if "Ge" in limits else f"greater than {limits['Gt']}" if "Gt" in limits else ""
    high = f"at most {limits['Le']}" if "Le" in limits else f"less than {limits['Lt']}" if "Lt" in limits else ""
    if "Ge" in limits and "Le" in limits:
        return f"must be between {limits['Ge']} and {limits['Le']}"
    return "must be " + " and ".join(x for x in (low, high) if x)


_TYPE_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "dict": "a mapping (key: value)",
    "model": "a mapping (key: value)",
    "list": "a list",
}


def _describe(err: Any, path: str, model: type[BaseModel] | None, field: Any) -> tuple[str, str]:
    """(path, message) for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    extra = getattr(field, "json_schema_extra", None)
    fix = extra.get("fix") if isinstance(extra, dict) else None
    fix_text = f"; {fix}" if fix else f"; see {DOCS}"
    got = _shown(err.get("input"), path)
    key = str(err["loc"][-1]) if err["loc"] else ""
    if kind == "extra_forbidden":
        if model is SqlServerSource and key.lower() in ("password", "pwd"):
            return (
                path,
                "a password must not be written in the config; put the password in an environment "
                "variable and name it in password_env",
            )
        if model is SnowflakeDestination and key.lower() in _SECRET_KEYS:
            return (
                path,
                "a secret must not be written in the config; put it in an environment variable and "
                "name it in password_env, private_key_env or private_key_passphrase_env",
            )
        allowed = list(model.model_fields) if model else []
        return (
            path,
            f"unknown key {key!r}{did_you_mean(key, allowed)}{' ' if did_you_mean(key, allowed) else '; '}"
            f"allowed keys: {', '.join(allowed)}",
        )
    if kind == "destination_type":
        value = err["input"].get("type") if isinstance(err.get("input"), dict) else None
        return join_path(
            path, "type"
        ), f"must be one of 's3', 'snowflake'{_shown(value, path)}; use type: s3 or type: snowflake"
    if kind == "missing":
        description = f" ({field.description})" if field is not None and field.description else ""
        return path, f"is required but missing; add {key}:{description}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return path, f"{_bounds(field)}{got}{fix_text}"
    if kind == "literal_error":
        expected = str(ctx.get("expected"))
        one_of = "one of " if "," in expected or " or " in expected else ""
        return path, f"must be {one_of}{expected}{got}{fix_text}"
    if kind in ("too_short", "string_too_short"):
        return path, f"must not be empty{fix_text}"
    if kind in ("value_error", "assertion_error"):
        return path, re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
    for word, meaning in _TYPE_WORDS.items():
        if kind.startswith(f"{word}_"):
            return path, f"must be {meaning}{got}{fix_text}"
    return path, f"{err['msg']}{got}{fix_text}"


def error_lines(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per error of ``exc``, raised while validating ``root``."""
    lines = []
    for err in exc.errors():
        path, model, field = _walk(tuple(err["loc"]), root)
        if err["type"] == "dtaas_problems":
            lines += [f"{join_path(path, sub)}: {msg}" for sub, msg in err["ctx"]["problems"]]
            continue
        where, message = _describe(err, path, model, field)
        lines.append(f"{where or 'top level'}: {message}")
    return lines
