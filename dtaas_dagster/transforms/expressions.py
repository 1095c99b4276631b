"""The filter_rows expression language: tokens -> a syntax tree. Never ``eval``, never raw SQL.

The language is a small, SQL-like subset::

    status = 'shipped' AND NOT (amount * 1.2 > 1000 OR region IN ('EU', 'UK'))
    note IS NOT NULL AND name LIKE 'A%' AND created_at >= TIMESTAMP '2024-01-01 00:00:00'
    quantity BETWEEN 1 AND 10 AND [Order Id] % 2 = 0 AND paid = TRUE

- comparisons ``= != <> < <= > >=``, ``AND``, ``OR``, ``NOT``, ``[NOT] IN (...)``,
  ``IS [NOT] NULL``, ``[NOT] LIKE 'pattern'`` (``%``, ``_``, ``\\`` escapes),
  ``[NOT] BETWEEN a AND b``; arithmetic ``+ - * / %`` and unary minus;
- literals: integers (``42``), decimals (``4.20``), floats (``4.2e0``), strings
  (``'it''s'``), ``TRUE``/``FALSE``, ``NULL``, ``DATE 'YYYY-MM-DD'`` and
  ``TIMESTAMP 'YYYY-MM-DD HH:MM:SS[.ffffff]'``;
- columns: bare names (``amount``), ``[any name]`` or ``"any name"``.

Keywords are case-insensitive. The parser is a recursive descent over the
grammar below; it knows nothing about Arrow or SQL Server. Evaluation is in
:mod:`.arrow_eval`, pushdown in :mod:`.pushdown`::

    expr      := or
    or        := and (OR and)*
    and       := not (AND not)*
    not       := NOT not | predicate
    predicate := sum [ cmp sum | [NOT] IN '(' literal (',' literal)* ')' | IS [NOT] NULL
                       | [NOT] LIKE string | [NOT] BETWEEN sum AND sum ]
    sum       := product (('+' | '-') product)*
    product   := unary (('*' | '/' | '%') unary)*
    unary     := '-' unary | primary
    primary   := literal | column | '(' expr ')'
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass
from typing import Any, Union

MAX_LENGTH = 10_000
MAX_DEPTH = 64

KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "TRUE", "FALSE", "DATE", "TIMESTAMP"}
COMPARISONS = {"=", "!=", "<>", "<", "<=", ">", ">="}


class ExpressionError(ValueError):
    """The expression cannot be parsed; the message shows where and how to fix it."""


# ----------------------------------------------------------------------------- tree
@dataclass(frozen=True)
class Literal:
    value: object  # int, decimal.Decimal, float, str, bool, None, dt.date or dt.datetime
    kind: str  # int, decimal, float, string, bool, null, date, timestamp


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Negate:
    operand: Node


@dataclass(frozen=True)
class Arithmetic:
    op: str  # + - * / %
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare:
    op: str  # = != < <= > >=  (<> is normalised to !=)
    left: Node
    right: Node


@dataclass(frozen=True)
class InList:
    operand: Node
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool = False


@dataclass(frozen=True)
class Like:
    operand: Node
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class Between:
    operand: Node
    low: Node
    high: Node
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Union[Literal, Column, Negate, Arithmetic, Compare, InList, IsNull, Like, Between, And, Or, Not]  # noqa: UP007


def columns_of(node: Node) -> set[str]:
    """Every column name the expression reads."""
    if isinstance(node, Column):
        return {node.name}
    found: set[str] = set()
    for child in children(node):
        found |= columns_of(child)
    return found


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Negate, Not, IsNull, Like, InList)):
        return (node.operand,) + (tuple(node.values) if isinstance(node, InList) else ())
    if isinstance(node, (Arithmetic, Compare)):
        return (node.left, node.right)
    if isinstance(node, Between):
        return (node.operand, node.low, node.high)
    if isinstance(node, (And, Or)):
        return node.items
    return ()


# ---------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, quoted, keyword, op, end
    text: str
    position: int


_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
      | (?P<string>'(?:[^']|'')*')
      | (?P<bracket>\[(?:[^\]]|\]\])+\])
      | (?P<dquote>"(?:[^"]|"")+")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><=|>=|<>|!=|[=<>+\-*/%(),])
    """,
    re.VERBOSE,
)


def _pointer(text: str, position: int) -> str:
    return f"at position {position + 1}: {text[max(0, position - 20) : position]}>>>{text[position : position + 20]}"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(
                f"unexpected character {text[position]!r} {_pointer(text, position)}; strings need single quotes "
                "('text'), names with spaces need [brackets]"
            )
        kind = match.lastgroup or ""
        raw = match.group(0)
        if kind == "string":
            tokens.append(Token("string", raw[1:-1].replace("''", "'"), position))
        elif kind == "bracket":
            tokens.append(Token("quoted", raw[1:-1].replace("]]", "]"), position))
        elif kind == "dquote":
            tokens.append(Token("quoted", raw[1:-1].replace('""', '"'), position))
        elif kind == "name":
            upper = raw.upper()
            tokens.append(Token("keyword", upper, position) if upper in KEYWORDS else Token("name", raw, position))
        elif kind != "space":
            tokens.append(Token(kind, raw, position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------- parser
def _number(text: str) -> Literal:
    if re.fullmatch(r"\d+", text):
        return Literal(int(text), "int")
    if "e" in text.lower():
        return Literal(float(text), "float")
    return Literal(decimal.Decimal(text), "decimal")


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.depth = 0

    # helpers
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, *texts: str) -> Token | None:
        token = self.current
        if token.kind == kind and (not texts or token.text in texts):
            return self.advance()
        return None

    def expect(self, kind: str, text: str, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            self.fail(f"expected {what}")
        return token  # type: ignore[return-value]

    def fail(self, message: str) -> None:
        token = self.current
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"{message}, found {found} {_pointer(self.text, token.position)}")

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels; simplify it")

    # grammar
    def parse(self) -> Node:
        node = self.parse_or()
        if self.current.kind != "end":
            self.fail("expected AND, OR or the end of the expression")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.accept("keyword", "OR"):
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.accept("keyword", "AND"):
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Node:
        if self.accept("keyword", "NOT"):
            self.nested()
            node = Not(self.parse_not())
            self.depth -= 1
            return node
        return self.parse_predicate()

    def parse_predicate(self) -> Node:
        left = self.parse_sum()
        token = self.current
        if token.kind == "op" and token.text in COMPARISONS:
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Compare(op, left, self.parse_sum())
        if self.accept("keyword", "IS"):
            negated = bool(self.accept("keyword", "NOT"))
            self.expect("keyword", "NULL", "NULL after IS [NOT]")
            return IsNull(left, negated)
        negated = bool(self.accept("keyword", "NOT"))
        if self.accept("keyword", "IN"):
            return InList(left, self.parse_in_values(), negated)
        if self.accept("keyword", "LIKE"):
            pattern = self.accept("string")
            if pattern is None:
                self.fail("expected a quoted pattern after LIKE, e.g. LIKE 'A%'")
            return Like(left, pattern.text, negated)  # type: ignore[union-attr]
        if self.accept("keyword", "BETWEEN"):
            low = self.parse_sum()
            self.expect("keyword", "AND", "AND in BETWEEN low AND high")
            return Between(left, low, self.parse_sum(), negated)
        if negated:
            self.fail("expected IN, LIKE or BETWEEN after NOT")
        return left

    def parse_in_values(self) -> tuple[Literal, ...]:
        self.expect("op", "(", "'(' after IN")
        values = [self.parse_literal_only()]
        while self.accept("op", ","):
            values.append(self.parse_literal_only())
        self.expect("op", ")", "')' to close the IN list")
        return tuple(values)

    def parse_literal_only(self) -> Literal:
        negative = bool(self.accept("op", "-"))
        node = self.parse_primary()
        if not isinstance(node, Literal) or (negative and node.kind not in ("int", "decimal", "float")):
            self.index -= 1
            self.fail(
                "IN lists hold literals only (numbers, 'strings', TRUE, FALSE, NULL, DATE '...', TIMESTAMP '...')"
            )
        assert isinstance(node, Literal)
        value: Any = node.value
        return Literal(-value, node.kind) if negative else node

    def parse_sum(self) -> Node:
        node = self.parse_product()
        while (token := self.accept("op", "+", "-")) is not None:
            node = Arithmetic(token.text, node, self.parse_product())
        return node

    def parse_product(self) -> Node:
        node = self.parse_unary()
        while (token := self.accept("op", "*", "/", "%")) is not None:
            node = Arithmetic(token.text, node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.accept("op", "-"):
            self.nested()
            operand = self.parse_unary()
            self.depth -= 1
            if isinstance(operand, Literal) and operand.kind in ("int", "decimal", "float"):
                return Literal(-operand.value, operand.kind)  # type: ignore[operator]
            return Negate(operand)
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.current
        if token.kind == "number":
            self.advance()
            return _number(token.text)
        if token.kind == "string":
            self.advance()
            return Literal(token.text, "string")
        if token.kind in ("name", "quoted"):
            self.advance()
            return Column(token.text)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE", "NULL"):
            self.advance()
            return Literal(None, "null") if token.text == "NULL" else Literal(token.text == "TRUE", "bool")
        if token.kind == "keyword" and token.text in ("DATE", "TIMESTAMP"):
            return self.parse_typed_literal()
        if self.accept("op", "("):
            self.nested()
            node = self.parse_or()
            self.depth -= 1
            self.expect("op", ")", "')'")
            return node
        if token.kind == "keyword":
            self.fail(f"{token.text} is a keyword; write [{token.text.lower()}] for a column of that name")
        self.fail("expected a column, a literal or '('")
        raise AssertionError  # unreachable: fail() raises

    def parse_typed_literal(self) -> Literal:
        keyword = self.advance()
        text = self.accept("string")
        if text is None:
            self.fail(
                f"expected a quoted value after {keyword.text}, e.g. {keyword.text} "
                + ("'2024-01-31'" if keyword.text == "DATE" else "'2024-01-31 12:00:00'")
            )
        try:
            if keyword.text == "DATE":
                return Literal(_date(text.text), "date")  # type: ignore[union-attr]
            return Literal(_timestamp(text.text), "timestamp")  # type: ignore[union-attr]
        except ValueError:
            raise ExpressionError(
                f"{keyword.text} {text.text!r} is not a valid {keyword.text.lower()} "  # type: ignore[union-attr]
                f"{_pointer(self.text, keyword.position)}; write YYYY-MM-DD"
                + (" HH:MM:SS[.ffffff]" if keyword.text == "TIMESTAMP" else "")
            ) from None


def parse_expression(text: str) -> Node:
    """Parse ``text`` into a syntax tree; :class:`ExpressionError` names the position and the fix."""
    if not text or not text.strip():
        raise ExpressionError("the expression is empty; write a condition such as status = 'shipped'")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text):,} characters long; at most {MAX_LENGTH:,} are allowed")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- display
def _quote_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.upper() not in KEYWORDS:
        return name
    return "[" + name.replace("]", "]]") + "]"


def render_literal(node: Literal) -> str:
    if node.kind == "null":
        return "NULL"
    if node.kind == "bool":
        return "TRUE" if node.value else "FALSE"
    if node.kind == "string":
        return "'" + str(node.value).replace("'", "''") + "'"
    if node.kind == "date":
        return f"DATE '{node.value}'"
    if node.kind == "timestamp":
        assert isinstance(node.value, dt.datetime)
        return f"TIMESTAMP '{node.value.isoformat(sep=' ')}'"
    if node.kind == "float":
        return repr(float(node.value)) + ("" if "e" in repr(float(node.value)) else "e0")  # type: ignore[arg-type]
    return str(node.value)


def render(node: Node) -> str:
    """The expression as text (fully parenthesised where it matters); parses back to the same tree."""
    if isinstance(node, Literal):
        return render_literal(node)
    if isinstance(node, Column):
        return _quote_name(node.name)
    if isinstance(node, Negate):
        return f"-({render(node.operand)})"
    if isinstance(node, Arithmetic):
        return f"({render(node.left)} {node.op} {render(node.right)})"
    if isinstance(node, Compare):
        return f"{render(node.left)} {node.op} {render(node.right)}"
    if isinstance(node, InList):
        values = ", ".join(render_literal(v) for v in node.values)
        return f"{render(node.operand)} {'NOT ' if node.negated else ''}IN ({values})"
    if isinstance(node, IsNull):
        return f"{render(node.operand)} IS {'NOT ' if node.negated else ''}NULL"
    if isinstance(node, Like):
        pattern = node.pattern.replace("'", "''")
        return f"{render(node.operand)} {'NOT ' if node.negated else ''}LIKE '{pattern}'"
    if isinstance(node, Between):
        return (
            f"{render(node.operand)} {'NOT ' if node.negated else ''}BETWEEN {render(node.low)} AND {render(node.high)}"
        )
    if isinstance(node, (And, Or)):
        word = " AND " if isinstance(node, And) else " OR "
        return "(" + word.join(render(item) for item in node.items) + ")"
    if isinstance(node, Not):
        return f"NOT ({render(node.operand)})"
    raise TypeError(f"not an expression node: {node!r}")
