"""T-SQL -> DuckDB SQL for one parsed statement, with SQL Server semantics.

Steps, all on the sqlglot AST (never on text):

1. *validate*: every node type must be in ``ALLOWED`` (anything else is error
   102 "not supported by the SQL Server double");
2. *resolve tables*: user tables become ``"db_x"."schema"."table"`` (208 when
   missing), ``sys.*`` / ``INFORMATION_SCHEMA.*`` become Arrow tables built
   from the catalog and registered on the session's cursor, CDC table functions
   become the CDC manager's Arrow result, also registered;
3. *bind values*: ``@Pn``, ``?`` and ``@variables`` become DuckDB named
   parameters (values are never pasted into SQL text); ``@@VERSION``-style
   globals, ``SCOPE_IDENTITY()``, ``DB_NAME()``, ``SERVERPROPERTY()``,
   ``OBJECT_ID()`` and the CDC scalar functions are evaluated here and bound;
4. *rewrite semantics*: int/int truncating division, division-by-zero error
   8134, ``+`` on strings and the 8,000-byte limit (``strings.py``), LEN
   ignoring trailing blanks, DATALENGTH in bytes, string comparisons ignoring
   trailing blanks (``comparisons.py``), CAST/CONVERT with styles and lengths
   (``casts.py``, ``datestyles.py``), date/time precision (``temporal.py``),
   ``*`` expanded from the catalog and from derived tables/CTEs so every
   result column keeps its declared type.

Parsing (``dialect.parse``) uses sqlglot's T-SQL without the keywords SQL
Server does not have; DuckDB SQL is written with every identifier quoted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp

from ..engine_api import Param, ResultColumn, SqlServerError, SqlType, not_supported
from . import casts, datestyles, temporal
from . import functions as F
from . import objects as O
from . import strings as S
from . import types as T
from .catalog import Column, Table
from .comparisons import COMPARISONS, ignore_trailing_blanks
from .dialect import duck_sql, parse
from .functions import is_constant_function

ALLOWED: tuple[type, ...] = (
    exp.Select,
    exp.Union,
    exp.From,
    exp.Join,
    exp.Where,
    exp.Group,
    exp.Having,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Distinct,
    exp.Column,
    exp.Identifier,
    exp.Table,
    exp.TableAlias,
    exp.Alias,
    exp.Star,
    exp.Literal,
    exp.National,
    exp.Null,
    exp.Boolean,
    exp.Paren,
    exp.Subquery,
    exp.In,
    exp.Exists,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.Not,
    exp.And,
    exp.Or,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Neg,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.TryCast,
    exp.Convert,
    exp.Coalesce,
    exp.Nullif,
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.Length,
    exp.Upper,
    exp.Lower,
    exp.Trim,
    exp.Substring,
    exp.Left,
    exp.Right,
    exp.Replace,
    exp.Concat,
    exp.Anonymous,
    exp.Parameter,
    exp.Placeholder,
    exp.Var,
    exp.DataType,
    exp.DataTypeParam,
    exp.CurrentTimestamp,
    exp.CurrentSchema,
    exp.DateAdd,
    exp.DateDiff,
    exp.Extract,
    exp.Year,
    exp.Month,
    exp.Day,
    exp.Abs,
    exp.Round,
    exp.Floor,
    exp.Ceil,
    exp.Uuid,
    exp.ObjectId,
    exp.HexString,
    exp.TimeStrToTime,
    exp.TsOrDsToDate,
    exp.With,
    exp.CTE,
    exp.Tuple,
    exp.Values,
    exp.WithTableHint,
    exp.Dot,
    exp.Interval,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Schema,
    exp.DPipe,
    exp.Bracket,
    exp.Unnest,
    exp.StrPosition,
    exp.Window,
    exp.RowNumber,
    exp.Partition,
    exp.Except,
    exp.Intersect,
    exp.Sign,
    exp.Stddev,
    exp.Sqrt,
    exp.Ln,
    exp.Exp,
    exp.Pad,
    exp.DateTrunc,
    exp.CurrentDate,
    exp.CurrentTime,
    exp.Null,
    exp.CaseSpecificColumnConstraint,
    exp.Hint,
    exp.TimeToStr,
    exp.TimeToUnix,
    exp.StrToTime,
    exp.Filter,
    exp.ColumnDef,
    exp.Timestamp,
    exp.Date,
    exp.Repeat,
    exp.Reverse,
    exp.Space,
    exp.Stuff,
    exp.ConcatWs,
    exp.Pow,
    exp.Chr,
    exp.Unicode,
    exp.Ascii,
    exp.LastDay,
    exp.DateFromParts,
    exp.GroupConcat,
    exp.Pi,
    exp.Log,
    exp.Var,
)
_BANNED_FUNCTIONS = {"openrowset", "opendatasource", "openquery", "xp_cmdshell"}
INT_NAMES = {"tinyint", "smallint", "int", "bigint", "bit"}
STRINGS = T.STRING_TYPES


@dataclass
class Translated:
    sql: str
    params: dict[str, Any]
    registrations: dict[str, pa.Table]
    columns: list[ResultColumn] | None = None


@dataclass
class Translator:
    session: Any
    params: dict[str, Param]
    bind: dict[str, Any] = field(default_factory=dict)
    registrations: dict[str, pa.Table] = field(default_factory=dict)
    scope: dict[str, Table] = field(default_factory=dict)
    cte_names: set[str] = field(default_factory=set)
    _qmarks: int = 0

    # -- entry points -----------------------------------------------------------
    def expression_tree(self, node: exp.Expression) -> exp.Expression:
        """Validate, resolve and rewrite ``node`` in place; returns the new root."""
        self._validate(node)
        for cte in node.find_all(exp.CTE):
            self.cte_names.add(cte.alias_or_name.lower())
        for table in list(node.find_all(exp.Table)):
            self._resolve_table(table)
        self._strip_column_qualifiers(node)
        root = node.transform(self._rewrite_values)
        for select in [n for n in reversed(list(root.dfs())) if isinstance(n, exp.Select)]:  # innermost first
            self._expand_star(select)
            self._register_derived(select)
        return self._semantics_bottom_up(root)

    def _register_derived(self, select: exp.Select) -> None:
        """A derived table or CTE gets a typed scope entry, so ``SELECT * FROM (...) AS t`` keeps its types."""
        query: exp.Expression = select
        while isinstance(query.parent, (exp.Union, exp.Except, exp.Intersect)) and query.parent.this is query:
            query = query.parent
        holder = query.parent
        if not isinstance(holder, (exp.Subquery, exp.CTE)) or not holder.alias:
            return
        alias = holder.args.get("alias")
        renamed = [c.name for c in alias.columns] if alias is not None and alias.columns else []
        branches = _set_branches(query)
        types = self._set_types(branches) if all(isinstance(b, exp.Select) for b in branches) else None
        columns = []
        for i, e in enumerate(select.expressions):
            name = renamed[i] if i < len(renamed) else e.alias_or_name
            known = types[i] if types is not None else self.type_of(e.this if isinstance(e, exp.Alias) else e)
            columns.append(Column(name, known or SqlType("?")))
        db = self.session.engine.database(self.session.database)
        self.scope[holder.alias.lower()] = Table(db, "", holder.alias, columns)

    def _semantics_bottom_up(self, root: exp.Expression) -> exp.Expression:
        """Apply ``_rewrite_semantics`` children first, so nested expressions are all rewritten.

        (sqlglot's ``transform`` does not descend into a node it just replaced, which
        left the inner ``+`` of ``a + '.' + b`` as an arithmetic plus.) Each
        replacement keeps the T-SQL type of the node it replaces.
        """
        for node in reversed(list(root.dfs())):
            new = self._rewrite_semantics(node)
            if new is node:
                continue
            if "sql_type" not in new.meta:
                known = self.type_of(node)
                if known is not None:
                    new.meta["sql_type"] = known
            if node is root:
                root = new
            else:
                node.replace(new)
        return root

    def select(self, node: exp.Expression) -> Translated:
        """A SELECT (or UNION) ready to run, with typed result columns."""
        original_types = self._output_types(node, resolve_first=True)
        root = self.expression_tree(node)
        columns = self._output_columns(root, original_types)
        return Translated(duck_sql(root), self.bind, self.registrations, columns)

    def value(self, value: Any, hint: str = "v") -> exp.Expression:
        """A bound DuckDB parameter holding ``value``."""
        name = f"{hint}{len(self.bind)}"
        self.bind[name] = value
        return exp.Placeholder(this=name)

    # -- validation -------------------------------------------------------------
    def _validate(self, node: exp.Expression) -> None:
        for child in node.walk():
            if not isinstance(child, ALLOWED):
                raise not_supported(f"{type(child).__name__} in {node.sql('tsql')[:200]}")
            if isinstance(child, exp.Anonymous) and str(child.this).lower() in _BANNED_FUNCTIONS:
                raise not_supported(str(child.this))
            if isinstance(child, exp.Select) and child.args.get("into"):
                raise not_supported("SELECT ... INTO")

    # -- tables -----------------------------------------------------------------
    def _resolve_table(self, table: exp.Table) -> None:
        from .views import catalog_view, is_catalog_schema

        name = table.name
        schema = table.db
        database = table.catalog
        if not schema and not database and name.lower() in self.cte_names:
            return
        if isinstance(table.this, exp.Anonymous) or isinstance(table.this, exp.Dot) or "fn_cdc_get" in name.lower():
            self._resolve_table_function(table)
            return
        db = self.session.engine.database(database or self.session.database)
        alias = table.alias or name
        if schema and is_catalog_schema(schema):
            view, data = catalog_view(self.session, db, schema, name)
            reg = f"__cat_{db.name}_{schema}_{name}".lower()
            self.registrations[reg] = data
            self._replace_table(table, reg, alias)
            self.scope[alias.lower()] = view
            return
        found = db.find_table(schema or "dbo", name)
        if found is None:
            raise SqlServerError(208, f"Invalid object name '{table.sql('tsql').split(' AS ')[0].split(' WITH')[0]}'.")
        self._replace_table(table, None, alias, found)
        self.scope[alias.lower()] = found

    def _strip_column_qualifiers(self, node: exp.Expression) -> None:
        """``sys.columns.name`` / ``[INFORMATION_SCHEMA].[TABLES].[x]``: keep only the table part."""
        for column in node.find_all(exp.Column):
            if column.args.get("db") is not None and column.table.lower() in self.scope:
                column.set("db", None)
                column.set("catalog", None)

    def _replace_table(self, table: exp.Table, reg: str | None, alias: str, found: Table | None = None) -> None:
        if found is not None:
            new = exp.table_(found.name, db=found.schema, catalog=found.database.duck_name, quoted=True)
        else:
            new = exp.table_(reg, quoted=True)
        new.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        table.replace(new)

    def _resolve_table_function(self, table: exp.Table) -> None:
        func = table.this if isinstance(table.this, exp.Anonymous) else table.find(exp.Anonymous)
        if func is None:
            raise not_supported(table.sql("tsql"))
        if func.name.lower() == "fn_listextendedproperty":  # the double keeps no extended properties
            self._register_function_result(table, func.name, *F.no_extended_properties())
            return
        name = f"{table.db or 'dbo'}.{func.name}" if table.db else func.name
        args = [self.constant(a) for a in func.expressions]
        txn = self.session.txn_for_read()
        columns, data = self.session.engine.cdc.table_function(txn, name, args)
        self._register_function_result(table, func.name, columns, data)

    def _register_function_result(
        self, table: exp.Table, fname: str, columns: list[ResultColumn], data: pa.Table
    ) -> None:
        func = exp.Anonymous(this=fname)
        reg = f"__tvf_{len(self.registrations)}_{func.name}".lower()
        self.registrations[reg] = data
        alias = table.alias or func.name
        fake = Table(
            self.session.engine.database(self.session.database),
            "cdc",
            func.name,
            [Column(c.name, c.type) for c in columns],
        )
        new = exp.table_(reg, quoted=True)
        new.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        table.replace(new)
        self.scope[alias.lower()] = fake

    # -- values: parameters, variables, globals, constant functions ---------------
    def constant(self, node: exp.Expression) -> Any:
        """The value of a constant/parameter/variable argument (for CDC functions)."""
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else (float(node.this) if "." in node.this else int(node.this))
        if isinstance(node, exp.National):
            return node.this
        if isinstance(node, exp.Null):
            return None
        if isinstance(node, exp.HexString):
            return bytes.fromhex(node.this)
        if isinstance(node, (exp.Parameter, exp.Placeholder)):
            return self._parameter_value(node)[0]
        if isinstance(node, (exp.Anonymous, exp.Dot)):
            return self._function_value(node)[0] if self._function_value(node) else None
        if isinstance(node, exp.Cast):
            return self.constant(node.this)
        if isinstance(node, exp.Paren):
            return self.constant(node.this)
        raise not_supported(f"non-constant argument {node.sql('tsql')}")

    def _parameter_value(self, node: exp.Expression) -> tuple[Any, SqlType | None]:
        if isinstance(node, exp.Placeholder) and not node.name:
            params = list(self.params.values())
            if self._qmarks >= len(params):
                raise SqlServerError(8178, "The parameterized query expects a parameter that was not supplied.")
            p = params[self._qmarks]
            self._qmarks += 1
            return p.value, p.type
        inner = node.this
        if isinstance(inner, exp.Parameter):  # @@GLOBAL
            return self.session.global_value(inner.name)
        name = "@" + node.name
        for key, p in self.params.items():
            if key.lower() == name.lower():
                return p.value, p.type
        var = self.session.variables.get(name.lower())
        if var is None:
            raise SqlServerError(137, f'Must declare the scalar variable "{name}".')
        return var.value, var.type

    def _function_value(self, node: exp.Expression) -> tuple[Any, SqlType] | None:
        func = node.expression if isinstance(node, exp.Dot) else node
        if not isinstance(func, exp.Anonymous):
            return None
        fname = func.name.lower()
        if not is_constant_function(fname):
            return None
        if fname.startswith("fn_cdc_"):
            args = [self.constant(a) for a in func.expressions]
            return self.session.engine.cdc.scalar_function(self.session.txn_for_read(), "sys." + fname, args)
        args = [self.constant(a) for a in func.expressions]
        return self.session.function_value(fname, args)

    def _rewrite_values(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.Parameter, exp.Placeholder)) and not (
            isinstance(node, exp.Placeholder)
            and node.name
            and node.name.startswith(("v", "p"))
            and node.name in self.bind
        ):
            value, sql_type = self._parameter_value(node)
            return self._typed_value(value, sql_type)
        if isinstance(node, exp.CurrentSchema) and node.this is not None and not _is_constant(node.this):
            return self._schema_lookup(node.this, by_id=True)
        if (
            isinstance(node, exp.Anonymous)
            and node.name.lower() == "schema_id"
            and len(node.expressions) == 1
            and not _is_constant(node.expressions[0])
        ):
            return self._schema_lookup(node.expressions[0], by_id=False)
        if isinstance(node, (exp.Anonymous, exp.Dot)):
            result = self._function_value(node)
            if result is not None:
                return self._typed_value(*result)
        if isinstance(node, exp.ObjectId):
            if not _is_constant(node.this):
                return self._object_lookup(O.object_id_subquery(node.this.transform(self._rewrite_values)))
            value = self.session.function_value("object_id", [self.constant(node.this)])
            return self._typed_value(*value)
        if isinstance(node, exp.Anonymous) and node.name.lower() == "objectproperty" and len(node.expressions) == 2:
            object_id = node.expressions[0].transform(self._rewrite_values)
            prop = node.expressions[1]
            if isinstance(prop, (exp.Parameter, exp.Placeholder)):
                prop = exp.Literal.string(str(self._parameter_value(prop)[0]))
            return self._object_lookup(O.property_subquery(object_id, prop))
        if isinstance(node, exp.CurrentSchema):  # SCHEMA_NAME([schema_id])
            args = [self.constant(node.this)] if node.this is not None else []
            return self._typed_value(*self.session.function_value("schema_name", args))
        if isinstance(node, exp.CurrentTimestamp):
            return self._typed_value(dt.datetime.now(), SqlType("datetime"))
        return node

    def _schema_lookup(self, argument: exp.Expression, *, by_id: bool) -> exp.Expression:
        db = self.session.engine.database(self.session.database)
        lookup = O.schema_lookup(db, argument.transform(self._rewrite_values), by_id=by_id)
        lookup.meta["sql_type"] = SqlType("nvarchar", 128) if by_id else SqlType("int")
        return lookup

    def _object_lookup(self, subquery: exp.Expression) -> exp.Expression:
        db = self.session.engine.database(self.session.database)
        self.registrations[O.REGISTRATION] = O.object_names(db)
        subquery.meta["sql_type"] = SqlType("int")
        return subquery

    def _typed_value(self, value: Any, sql_type: SqlType | None) -> exp.Expression:
        if isinstance(value, dt.datetime) and temporal.is_text_stored(sql_type):
            value = temporal.datetime_text(value, offset=sql_type.name == "datetimeoffset")  # the storage form
        placeholder = self.value(value)
        if value is None and sql_type is not None:
            duck = "TIMESTAMP" if sql_type.name == "datetime2" else T.storage_type(sql_type)
            typed_null = exp.Cast(this=placeholder, to=exp.DataType.build(duck, dialect="duckdb"))
            typed_null.meta.update(sql_type=sql_type, storage_cast=True)  # a DuckDB cast, not a T-SQL CAST
            return typed_null
        if sql_type is not None:
            placeholder.meta["sql_type"] = sql_type
        return placeholder

    # -- semantics ----------------------------------------------------------------
    def _rewrite_semantics(self, node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Div):
            left, right = self.type_of(node.this), self.type_of(node.expression)
            divisor = exp.Anonymous(this="tsql_nz", expressions=[node.expression.copy()])
            if left and right and left.name in INT_NAMES and right.name in INT_NAMES:
                return exp.IntDiv(this=node.this.copy(), expression=divisor)
            return exp.Div(this=node.this.copy(), expression=divisor)
        if isinstance(node, COMPARISONS) and (dated := temporal.comparison(node, self.type_of)) is not None:
            return dated
        if isinstance(node, (*COMPARISONS, exp.In, exp.Between, exp.Like)):
            return ignore_trailing_blanks(node, self.type_of) or node
        if isinstance(node, exp.DateAdd):
            return temporal.dateadd(node, self.type_of) or node
        if isinstance(node, exp.Coalesce):
            return temporal.coalesce(node, self.type_of) or node
        if isinstance(node, exp.Add) and self._is_string(node):
            joined = exp.DPipe(this=node.this.copy(), expression=node.expression.copy())
            return S.capped(joined, self.type_of(node))
        if isinstance(node, (exp.Repeat, exp.Concat, exp.ConcatWs)):
            return S.capped(node.copy(), self.type_of(node))
        if isinstance(node, exp.Convert) and isinstance(node.this, exp.DataType):
            return self._rewrite_convert(node)
        if isinstance(node, (exp.Cast, exp.TryCast)) and not node.meta.get("storage_cast"):
            return self._rewrite_cast(node)
        if isinstance(node, exp.Length):  # LEN: no trailing blanks; UTF-16 code units for n-types
            trimmed = exp.Anonymous(this="rtrim", expressions=[node.this.copy()])
            argument = node.this.this if isinstance(node.this, exp.Cast) else node.this  # sqlglot adds CAST(x AS TEXT)
            if not S.is_national(self.type_of(argument)):
                return exp.Length(this=trimmed)
            return exp.Add(this=exp.Length(this=trimmed), expression=F.supplementary_chars(trimmed.copy()))
        if isinstance(node, exp.Anonymous):
            return self._typed(F.rewrite_anonymous(node, self.type_of), F.anonymous_type(node, self.type_of))
        if isinstance(node, exp.Extract) and node.name.lower() in ("nanosecond", "ns"):
            return self._typed(F.nanosecond(node.expression.copy(), self.type_of(node.expression)), SqlType("int"))
        if isinstance(node, (exp.Extract, exp.DateDiff, exp.Year, exp.Month, exp.Day, exp.LastDay)):
            temporal.timestamp_operands(node, self.type_of)  # in place: text-stored operands read as TIMESTAMP
        if isinstance(node, exp.Extract) and node.name.lower() in ("weekday", "dw", "dayofweek", "dow"):
            dow = exp.Extract(this=exp.var("dow"), expression=node.expression.copy())
            return self._typed(exp.Paren(this=exp.Add(this=dow, expression=exp.Literal.number(1))), SqlType("int"))
        return node

    @staticmethod
    def _typed(node: exp.Expression, sql_type: SqlType | None) -> exp.Expression:
        """Keep the T-SQL result type of a rewritten expression for the result's COLMETADATA."""
        if sql_type is not None:
            node.meta["sql_type"] = sql_type
        return node

    def _rewrite_convert(self, node: exp.Convert) -> exp.Expression:
        """CONVERT(type, x[, style]) is CAST(x AS type), with the style for dates written or read as text."""
        hex_style = _binary_hex_style(node)
        if hex_style is not None:  # CONVERT(binary(n), '0x0A1B' | '0A1B', 1 | 2): hex text to bytes
            text = node.expression.copy()
            digits = exp.Substring(this=text, start=exp.Literal.number(3)) if hex_style == 1 else text
            unhexed = exp.Anonymous(this="unhex", expressions=[digits])
            return self._typed(unhexed, T.from_datatype(node.this))
        kind = exp.TryCast if node.args.get("safe") else exp.Cast
        cast = kind(this=node.expression.copy(), to=node.this.copy())
        style_node = node.args.get("style")
        if style_node is None:
            return self._rewrite_cast(cast)
        style = self._style_value(style_node)
        if style is None:  # CONVERT(..., NULL) is NULL
            return self._typed(
                exp.Cast(this=exp.Null(), to=exp.DataType.build("VARCHAR")), T.from_datatype(node.this, cast=True)
            )
        return casts.rewrite(cast, self.type_of, style=style, style_given=True)

    def _style_value(self, node: exp.Expression) -> int | None:
        if isinstance(node, exp.Placeholder) and node.name in self.bind:
            return datestyles.style_number(self.bind[node.name])
        if isinstance(node, exp.Null):
            return None
        if isinstance(node, exp.Literal) and not node.is_string:
            return int(node.this)
        raise not_supported(f"CONVERT with the style {node.sql('tsql')}")

    def _rewrite_cast(self, node: exp.Expression) -> exp.Expression:
        return casts.rewrite(node, self.type_of)

    def _is_string(self, node: exp.Binary) -> bool:
        left, right = self.type_of(node.this), self.type_of(node.expression)
        return bool((left and left.name in STRINGS) or (right and right.name in STRINGS))

    # -- static typing ------------------------------------------------------------
    def column_of(self, node: exp.Column) -> Column | None:
        if node.table:
            table = self.scope.get(node.table.lower())
            return table.column(node.name) if table else None
        for table in self.scope.values():
            col = table.column(node.name)
            if col is not None:
                return col
        return None

    def type_of(self, node: exp.Expression) -> SqlType | None:
        """SQL Server type of an expression where it can be known statically, else None."""
        if "sql_type" in node.meta:
            return node.meta["sql_type"]
        if isinstance(node, exp.Column):
            col = self.column_of(node)
            return col.type if col else None
        if isinstance(node, exp.Literal):
            if node.is_string:
                return SqlType("varchar", max(1, len(node.this)), nullable=False)
            if "." in node.this or "e" in node.this.lower():
                digits = node.this.replace("-", "").split(".")
                scale = len(digits[1]) if len(digits) > 1 else 0
                return SqlType("numeric", precision=max(len("".join(digits)), 1), scale=scale, nullable=False)
            return SqlType("int" if abs(int(node.this)) < 2**31 else "bigint", nullable=False)
        if isinstance(node, exp.National):
            return SqlType("nvarchar", max(1, len(node.this)), nullable=False)
        if isinstance(node, exp.HexString):
            return SqlType("varbinary", max(1, (len(node.this) + 1) // 2), nullable=False)
        if isinstance(node, exp.Convert) and isinstance(node.this, exp.DataType):
            try:
                return T.from_datatype(node.this, cast=True)
            except SqlServerError:
                return None
        if isinstance(node, (exp.Cast, exp.TryCast)):
            try:
                return T.from_datatype(node.args["to"], cast=True)
            except SqlServerError:
                return None
        if isinstance(node, exp.Count):
            return SqlType("bigint" if node.args.get("big_int") else "int")
        if isinstance(node, (exp.Paren, exp.Alias, exp.Neg, exp.Abs)):
            return self.type_of(node.this)
        if isinstance(node, exp.Coalesce):
            return temporal.common_type(node, self.type_of)
        if isinstance(node, (exp.Min, exp.Max, exp.Sum, exp.Nullif)):
            return self.type_of(node.this)
        if isinstance(node, exp.DateAdd):
            return temporal.dateadd_type(self.type_of(node.this), node.text("unit"))
        if isinstance(node, (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)):
            return self._arith_type(node)
        if isinstance(node, (exp.Upper, exp.Lower, exp.Trim, exp.Substring, exp.Left, exp.Right)):
            return self.type_of(node.this)
        if isinstance(node, exp.Length):
            return SqlType("int")
        if isinstance(node, (exp.Concat, exp.ConcatWs)):
            return S.concat_type([self.type_of(e) for e in node.expressions])
        if isinstance(node, exp.Repeat):
            return S.repeat_type(self.type_of(node.this))
        if isinstance(node, exp.Anonymous):
            return F.anonymous_type(node, self.type_of)
        if isinstance(node, exp.CurrentTimestamp):
            return SqlType("datetime")
        if isinstance(node, exp.Uuid):
            return SqlType("uniqueidentifier")
        if isinstance(node, (exp.Year, exp.Month, exp.Day, exp.DateDiff, exp.Extract)):
            return SqlType("int")
        return None

    def _arith_type(self, node: exp.Binary) -> SqlType | None:
        left, right = self.type_of(node.this), self.type_of(node.expression)
        if not left or not right:
            return None
        if isinstance(node, exp.Add) and (left.name in STRINGS or right.name in STRINGS):
            return S.concat_type([left, right])
        order = [
            "bit",
            "tinyint",
            "smallint",
            "int",
            "bigint",
            "smallmoney",
            "money",
            "decimal",
            "numeric",
            "real",
            "float",
        ]
        if left.name in order and right.name in order:
            winner = max(left, right, key=lambda t: order.index(t.name))
            if winner.name in ("decimal", "numeric"):
                return None
            return SqlType(winner.name)
        return None

    # -- result columns -------------------------------------------------------------
    def _output_types(self, node: exp.Expression, resolve_first: bool) -> None:
        return None

    def _expand_star(self, select: exp.Select) -> None:
        new: list[exp.Expression] = []
        changed = False
        for e in select.expressions:
            if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
                qualifier = e.table if isinstance(e, exp.Column) else None
                aliases = self._from_aliases(select)
                if qualifier:
                    aliases = [a for a in aliases if a.lower() == qualifier.lower()]
                if not aliases or any(a.lower() not in self.scope for a in aliases):
                    new.append(e)
                    continue
                for alias in aliases:
                    for col in self.scope[alias.lower()].columns:
                        new.append(exp.column(col.name, table=alias, quoted=True))
                changed = True
            else:
                new.append(e)
        if changed:
            select.set("expressions", new)

    @staticmethod
    def _from_aliases(select: exp.Select) -> list[str]:
        sources: list[exp.Expression] = []
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is not None:
            sources.append(from_.this)
        sources.extend(j.this for j in select.args.get("joins") or [])
        return [s.alias_or_name for s in sources]

    def _output_columns(self, root: exp.Expression, _unused: Any) -> list[ResultColumn] | None:
        branches = _set_branches(root)  # the SELECTs of a UNION / EXCEPT / INTERSECT, left first
        if not all(isinstance(b, exp.Select) for b in branches):
            return None
        first = branches[0].expressions
        if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)) for e in first):
            return None
        types = self._set_types(branches)
        return [
            ResultColumn(e.alias_or_name if isinstance(e, (exp.Alias, exp.Column)) else "", t if t else SqlType("?"))
            for e, t in zip(first, types)
        ]

    def _set_types(self, branches: list[exp.Expression]) -> list[SqlType | None]:
        """The column types of a SELECT or a set operation's SELECTs (left first): the first branch's,
        except that a text column takes the widest branch's text type, as SQL Server does (None, so
        typed from the data, when a later branch's type is not known). Only text columns look at the
        other branches: typing every branch's every column cost a 100-branch probe 0.15 CPU-s."""
        types = [self.type_of(e.this if isinstance(e, exp.Alias) else e) for e in branches[0].expressions]
        text = [i for i, t in enumerate(types) if t is not None and t.name in _TEXT_TYPES]
        for branch in branches[1:] if text else []:
            for i in text:
                current = types[i]
                if current is None or i >= len(branch.expressions):
                    continue
                e = branch.expressions[i]
                other = self.type_of(e.this if isinstance(e, exp.Alias) else e)
                types[i] = None if other is None else _wider_text(current, other)
        return types


def _set_branches(root: exp.Expression) -> list[exp.Expression]:
    """The SELECTs of a set operation, left first (a bracketed branch without an alias unwrapped)."""
    if isinstance(root, exp.Subquery) and not root.alias:
        return _set_branches(root.this)
    if isinstance(root, (exp.Union, exp.Except, exp.Intersect)):
        return _set_branches(root.this) + _set_branches(root.expression)
    return [root]


_TEXT_TYPES = frozenset({"char", "varchar", "nchar", "nvarchar"})


def _wider_text(left: SqlType, right: SqlType) -> SqlType:
    """The type of a set operation's text column from two branches' types: the longer length
    ((max) wins), nvarchar over varchar and nchar over char. Other types keep the left branch's
    (the double's simplification; a binary column is not widened either)."""
    if left.name not in _TEXT_TYPES or right.name not in _TEXT_TYPES:
        return left
    if left.length is None or right.length is None:
        return left
    length = -1 if -1 in (left.length, right.length) else max(left.length, right.length)
    varying = left.name.endswith("varchar") or right.name.endswith("varchar")
    unicode = left.name.startswith("n") or right.name.startswith("n")
    name = ("n" if unicode else "") + ("varchar" if varying else "char")
    if length != -1 and length > (4000 if name.startswith("n") else 8000):
        length = -1
    return SqlType(name, length, nullable=left.nullable or right.nullable)


def _is_constant(node: exp.Expression) -> bool:
    """No column references: the engine can evaluate it before DuckDB runs."""
    return node.find(exp.Column) is None


def describe_parameters(session: Any, sql: str) -> list[tuple[str, SqlType]]:
    """sp_describe_undeclared_parameters: type each @Pn from its context."""
    node = parse(sql)
    tr = Translator(session, {})
    for table in list(node.find_all(exp.Table)):
        try:
            tr._resolve_table(table)
        except SqlServerError:
            pass
    out: list[tuple[str, SqlType]] = []
    insert_cols = _insert_columns(node, tr)
    for p in node.find_all(exp.Parameter, exp.Placeholder):
        if isinstance(p, exp.Parameter) and isinstance(p.this, exp.Parameter):
            continue
        name = "@" + p.name if p.name else f"@P{len(out) + 1}"
        t = _context_type(p, tr, insert_cols)
        out.append((name, t or SqlType("nvarchar", 4000)))
    return out


def _insert_columns(node: exp.Expression, tr: Translator) -> list[Column] | None:
    if not isinstance(node, exp.Insert):
        return None
    table = next(iter(tr.scope.values()), None)
    if table is None:
        return None
    target = node.this
    if isinstance(target, exp.Schema) and target.expressions:
        return [table.column(c.name) for c in target.expressions]
    return [c for c in table.columns if not c.identity]


def _context_type(p: exp.Expression, tr: Translator, insert_cols: list[Column] | None) -> SqlType | None:
    parent = p.parent
    if isinstance(parent, exp.Tuple) and insert_cols:
        idx = parent.expressions.index(p)
        if idx < len(insert_cols) and insert_cols[idx] is not None:
            return insert_cols[idx].type
    if isinstance(parent, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)):
        other = parent.this if parent.this is not p else parent.expression
        return tr.type_of(other)
    if isinstance(parent, exp.EQ) is False and isinstance(parent, exp.Update):
        return None
    return None


def _binary_hex_style(node: exp.Convert) -> int | None:
    """The style of CONVERT(binary/varbinary, text, 1|2) (hex text to bytes), else None."""
    style = node.args.get("style")
    if style is None or node.this.this not in (exp.DataType.Type.BINARY, exp.DataType.Type.VARBINARY):
        return None
    if isinstance(style, exp.Literal) and not style.is_string and int(style.this) in (1, 2):
        return int(style.this)
    return None
