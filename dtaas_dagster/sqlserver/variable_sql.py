"""Query variables' SQL: ``$name`` references become bound ``?`` parameters, never spliced text.

A query variable is SQL the user wrote (``variables: {CustomerId: {query: ...}}``).
The product adds nothing to it but parameters: every ``$name`` / ``${name}``
in the code becomes ``?``, and so does a string literal that is exactly one
reference, the form the original DTaaS used::

    SELECT Id FROM dbo.Customers WHERE Name = '$sourceDatabaseName'
    ->  SELECT Id FROM dbo.Customers WHERE Name = ?        parameters: [sourceDatabaseName]

so a database named ``x'; DROP TABLE t--`` is a harmless value. A reference
inside a longer literal (``'db_$sourceDatabaseName'``) cannot be a parameter
and is refused with the fix (``'db_' + $sourceDatabaseName``). Comments,
``[bracketed]`` and ``"quoted"`` identifiers are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PIECES = re.compile(
    r"""(?P<comment>--[^\n]*|/\*.*?\*/)
      | (?P<literal>N?'(?:[^']|'')*')
      | (?P<ident>\[(?:[^\]]|\]\])*\]|"(?:[^"]|"")*")
      | (?P<variable>\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*))
      | (?P<other>[^-/'N\["$]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)
_WHOLE_LITERAL = re.compile(r"^N?'\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))'$")
_REFERENCE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*")


class VariableSqlError(ValueError):
    """The query cannot be run with parameters; the message says how to write it."""


@dataclass(frozen=True)
class BoundQuery:
    """The query text with ``?`` placeholders and the variable name of each, in order."""

    sql: str
    parameters: tuple[str, ...]


def bind_variables(text: str) -> BoundQuery:
    """Replace ``$name`` references (bare or as a whole quoted literal) by ``?``."""
    out: list[str] = []
    names: list[str] = []
    for match in _PIECES.finditer(text):
        kind = match.lastgroup
        piece = match.group(0)
        if kind == "variable":
            names.append(match.group("braced") or match.group("bare"))
            out.append("?")
        elif kind == "literal":
            whole = _WHOLE_LITERAL.match(piece)
            if whole:
                names.append(whole.group(1) or whole.group(2))
                out.append("?")
            elif _REFERENCE.search(piece):
                reference = _REFERENCE.search(piece).group(0)  # type: ignore[union-attr]
                raise VariableSqlError(
                    f"the literal {piece[:60]} contains {reference} inside other text; a variable can only be a whole "
                    f"value. Write the text around it separately, e.g. 'prefix_' + {reference.replace('{', '')}"
                )
            else:
                out.append(piece)
        else:
            out.append(piece)
    return BoundQuery("".join(out), tuple(names))
