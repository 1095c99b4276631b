"""CONVERT(<string type>, <date/time>, style), and CAST of a date/time to a string.

SQL Server writes dates as the style number says
(https://learn.microsoft.com/en-us/sql/t-sql/functions/cast-and-convert-transact-sql#date-and-time-styles);
CAST and CONVERT without a style use style 0 for datetime and smalldatetime
(``Jan  2 2024  3:04AM``) and 121 for date, time, datetime2 and
datetimeoffset. Fractions have as many digits as the type's scale (3 for
datetime, n for datetime2(n)/time(n)/datetimeoffset(n), none for scale 0);
style 126 leaves out a fraction that is zero. Hijri styles (130, 131) and
styles the double does not know are error 102, never a different text.
"""

from __future__ import annotations

from sqlglot import exp

from ..engine_api import SqlServerError, SqlType, not_supported
from .temporal import is_text_stored, substitute

# style -> pieces; a piece is a literal or one of the {names} below
_DATE_STYLES = {
    1: "{mm}/{dd}/{yy}",
    101: "{mm}/{dd}/{yyyy}",
    2: "{yy}.{mm}.{dd}",
    102: "{yyyy}.{mm}.{dd}",
    3: "{dd}/{mm}/{yy}",
    103: "{dd}/{mm}/{yyyy}",
    4: "{dd}.{mm}.{yy}",
    104: "{dd}.{mm}.{yyyy}",
    5: "{dd}-{mm}-{yy}",
    105: "{dd}-{mm}-{yyyy}",
    6: "{dd} {mon} {yy}",
    106: "{dd} {mon} {yyyy}",
    7: "{mon} {dd}, {yy}",
    107: "{mon} {dd}, {yyyy}",
    10: "{mm}-{dd}-{yy}",
    110: "{mm}-{dd}-{yyyy}",
    11: "{yy}/{mm}/{dd}",
    111: "{yyyy}/{mm}/{dd}",
    12: "{yy}{mm}{dd}",
    112: "{yyyy}{mm}{dd}",
    23: "{yyyy}-{mm}-{dd}",
}
_TIME_STYLES = {
    8: "{hh}:{mi}:{ss}",
    24: "{hh}:{mi}:{ss}",
    108: "{hh}:{mi}:{ss}",
    14: "{hh}:{mi}:{ss}{:frac}",
    114: "{hh}:{mi}:{ss}{:frac}",
}
_DATETIME_STYLES = {
    0: "{mon} {d_} {yyyy} {h12_}:{mi}{ampm}",
    100: "{mon} {d_} {yyyy} {h12_}:{mi}{ampm}",
    9: "{mon} {d_} {yyyy} {h12_}:{mi}:{ss}{:frac}{ampm}",
    109: "{mon} {d_} {yyyy} {h12_}:{mi}:{ss}{:frac}{ampm}",
    13: "{dd} {mon} {yyyy} {hh}:{mi}:{ss}{:frac}",
    113: "{dd} {mon} {yyyy} {hh}:{mi}:{ss}{:frac}",
    20: "{yyyy}-{mm}-{dd} {hh}:{mi}:{ss}",
    120: "{yyyy}-{mm}-{dd} {hh}:{mi}:{ss}",
    21: "{yyyy}-{mm}-{dd} {hh}:{mi}:{ss}{.frac}",
    25: "{yyyy}-{mm}-{dd} {hh}:{mi}:{ss}{.frac}",
    121: "{yyyy}-{mm}-{dd} {hh}:{mi}:{ss}{.frac}",
    126: "{yyyy}-{mm}-{dd}T{hh}:{mi}:{ss}{.frac?}",
    127: "{yyyy}-{mm}-{dd}T{hh}:{mi}:{ss}{.frac?}Z",
}
_PARTS = {
    "yyyy": "strftime(__ts, '%Y')",
    "yy": "strftime(__ts, '%y')",
    "mm": "strftime(__ts, '%m')",
    "dd": "strftime(__ts, '%d')",
    "mon": "strftime(__ts, '%b')",
    "hh": "strftime(__ts, '%H')",
    "mi": "strftime(__ts, '%M')",
    "ss": "strftime(__ts, '%S')",
    "ampm": "strftime(__ts, '%p')",
    "d_": "lpad(CAST(day(__ts) AS VARCHAR), 2, ' ')",
    "h12_": "lpad(CAST(CAST(strftime(__ts, '%I') AS INTEGER) AS VARCHAR), 2, ' ')",
}


def default_style(source: SqlType) -> int:
    return 0 if source.name in ("datetime", "smalldatetime") else 121


def fraction_digits(source: SqlType) -> int:
    if source.name in ("datetime", "smalldatetime"):
        return 3
    if source.name == "date":
        return 0
    return 7 if source.scale is None else source.scale


def _operands(source: SqlType) -> tuple[str, str]:
    """DuckDB SQL (over ``__x``) for the value as TIMESTAMP and for its 7 fraction digits."""
    if is_text_stored(source):
        return "CAST(substr(__x, 1, 26) AS TIMESTAMP)", "substr(__x, 21, 7)"
    if source.name == "time":
        text = "CAST(__x AS VARCHAR)"
        return (
            f"CAST('1900-01-01 ' || substr({text}, 1, 8) AS TIMESTAMP)",
            f"rpad(regexp_extract({text}, '\\.(\\d+)', 1), 7, '0')",
        )
    ts = "CAST(__x AS TIMESTAMP)"
    return ts, f"(strftime({ts}, '%f') || '0')"


def _pattern(source: SqlType, style: int) -> str:
    if source.name == "date":  # a date has no time: the date styles, and the date part of 120/121/126
        if style in (20, 21, 25, 120, 121, 126, 127):
            return _DATE_STYLES[23]
        return _DATE_STYLES.get(style) or _unsupported(source, style)
    if source.name == "time":  # a time has no date: the time styles, and the time part of 120/121/126
        if style in (20, 21, 25, 120, 121, 126, 127):
            return _TIME_STYLES[8] + ("{.frac?}" if style in (126, 127) else "{.frac}")
        return _TIME_STYLES.get(style) or _unsupported(source, style)
    if source.name == "datetimeoffset" and style in (21, 25, 121):
        return _DATETIME_STYLES[121] + " {offset}"
    if source.name == "datetimeoffset" and style not in (20, 120, 23) and style not in _DATE_STYLES:
        return _unsupported(source, style)  # the offset styles (126/127 in UTC) are not modelled
    return (
        _DATE_STYLES.get(style) or _TIME_STYLES.get(style) or _DATETIME_STYLES.get(style) or _unsupported(source, style)
    )


def _unsupported(source: SqlType, style: int) -> str:
    raise not_supported(f"CONVERT of {source.name} to a string with style {style}")


def styled_text(node: exp.Expression, source: SqlType, style: int | None) -> exp.Expression:
    """The DuckDB expression writing temporal ``node`` (of type ``source``) as SQL Server's style does."""
    if style is None:
        style = default_style(source)
    if style in (130, 131):
        raise not_supported(f"Hijri style {style}")
    ts, frac7 = _operands(source)
    digits = fraction_digits(source)
    pieces: list[str] = []
    for literal, name in _split(_pattern(source, style)):
        if literal:
            pieces.append("'" + literal.replace("'", "''") + "'")
        if name is None:
            continue
        if name in ("frac", ".frac", ":frac", ".frac?"):
            if digits:
                sep = {"frac": "", ".frac": ".", ":frac": ":", ".frac?": "."}[name]
                text = f"'{sep}' || substr({frac7}, 1, {digits})"
                if name == ".frac?":  # style 126: a zero fraction is left out
                    text = f"CASE WHEN substr({frac7}, 1, {digits}) = repeat('0', {digits}) THEN '' ELSE {text} END"
                pieces.append(text)
        elif name == "offset":
            pieces.append("substr(__x, 29, 6)")
        else:
            pieces.append(_PARTS[name].replace("__ts", ts))
    return substitute(" || ".join(pieces), x=node)


def _split(pattern: str) -> list[tuple[str, str | None]]:
    """'{yyyy}-{mm}' -> [('', 'yyyy'), ('-', 'mm')]: literal text before each {name}."""
    out: list[tuple[str, str | None]] = []
    rest = pattern
    while rest:
        start = rest.find("{")
        if start < 0:
            out.append((rest, None))
            break
        end = rest.index("}", start)
        out.append((rest[:start], rest[start + 1 : end]))
        rest = rest[end + 1 :]
    return out


def style_number(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SqlServerError(8116, f"Argument data type of the style in CONVERT is invalid: {value!r}.") from None
