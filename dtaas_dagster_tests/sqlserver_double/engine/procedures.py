"""EXEC of procedures: ``sys.sp_cdc_*`` go to the CDC manager, anything else is 2812."""

from __future__ import annotations

import re
from typing import Any

from ..engine_api import Param, SqlServerError, StatementResult, not_supported
from .translate import Translator, parse

_EXEC = re.compile(r"^EXEC(?:UTE)?\s+((?:\[?\w+\]?\.)*\[?\w+\]?)\s*(.*)$", re.I | re.S)
_ARG = re.compile(r"^\s*(@\w+)\s*=\s*(.+?)\s*$", re.S)


def execute_procedure(session: Any, text: str, params: dict[str, Param]) -> StatementResult:
    m = _EXEC.match(text.strip())
    if not m:
        raise not_supported(text[:200])
    name = m.group(1).replace("[", "").replace("]", "")
    short = name.split(".")[-1].lower()
    if not short.startswith("sp_cdc_"):
        raise SqlServerError(2812, f"Could not find stored procedure '{name}'.")
    args = _arguments(session, m.group(2), params)
    with session.autocommit_scope() as txn:
        txn.changed = True
        result = session.engine.cdc.call_procedure(txn, "sys." + short, args)
    return result if isinstance(result, StatementResult) else StatementResult(return_status=0)


def _arguments(session: Any, text: str, params: dict[str, Param]) -> dict[str, Any]:
    """'@a = N'x', @b = 1' -> {'@a': 'x', '@b': 1}; values must be constants, params or variables."""
    out: dict[str, Any] = {}
    if not text.strip():
        return out
    tr = Translator(session, params)
    for i, raw in enumerate(_split_args(text)):
        m = _ARG.match(raw)
        key = m.group(1) if m else f"#{i + 1}"
        value_node = parse(f"SELECT {m.group(2) if m else raw}").expressions[0]
        out[key.lower()] = tr.constant(value_node)
    return out


def _split_args(text: str) -> list[str]:
    parts, depth, quote, cur = [], 0, False, ""
    for ch in text:
        if ch == "'":
            quote = not quote
        if not quote:
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                parts.append(cur.strip())
                cur = ""
                continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return [p for p in parts]
