"""Result sets of the system procedures the ODBC drivers call by RPC name.

``sp_datatype_info_100`` (ODBC 3 variant): Microsoft ODBC Driver 18 calls it at
connect and uses the rows to choose parameter types; without the datetime2 and
(max) rows it binds datetime parameters as datetime (losing microseconds) and
refuses strings over 4,000 characters. The rows below follow SQL Server 2022's
output for the types the double supports (ordered as SQL Server orders them:
DATA_TYPE, then AUTO_INCREMENT, MONEY, USERTYPE).

``sp_describe_undeclared_parameters``: SQL Server's documented result-set
columns; the engine infers each parameter's type.
"""

from __future__ import annotations

from typing import Any

from ..engine_api import ResultColumn, SqlType

SMALLINT, INT = SqlType("smallint"), SqlType("int")
SYSNAME = SqlType("nvarchar", length=128)
VC32 = SqlType("varchar", length=32)

DATATYPE_INFO_COLUMNS = [
    ResultColumn("TYPE_NAME", SqlType("nvarchar", length=128, nullable=False)),
    ResultColumn("DATA_TYPE", SMALLINT),
    ResultColumn("PRECISION", INT),
    ResultColumn("LITERAL_PREFIX", VC32),
    ResultColumn("LITERAL_SUFFIX", VC32),
    ResultColumn("CREATE_PARAMS", VC32),
    ResultColumn("NULLABLE", SMALLINT),
    ResultColumn("CASE_SENSITIVE", SMALLINT),
    ResultColumn("SEARCHABLE", SMALLINT),
    ResultColumn("UNSIGNED_ATTRIBUTE", SMALLINT),
    ResultColumn("MONEY", SMALLINT),
    ResultColumn("AUTO_INCREMENT", SMALLINT),
    ResultColumn("LOCAL_TYPE_NAME", SYSNAME),
    ResultColumn("MINIMUM_SCALE", SMALLINT),
    ResultColumn("MAXIMUM_SCALE", SMALLINT),
    ResultColumn("SQL_DATA_TYPE", SMALLINT),
    ResultColumn("SQL_DATETIME_SUB", SMALLINT),
    ResultColumn("NUM_PREC_RADIX", INT),
    ResultColumn("INTERVAL_PRECISION", SMALLINT),
    ResultColumn("USERTYPE", SMALLINT),
]

N = None
# TYPE_NAME, DATA_TYPE, PRECISION, PREFIX, SUFFIX, CREATE_PARAMS, NULLABLE, CASE_SENSITIVE, SEARCHABLE,
# UNSIGNED, MONEY, AUTO_INCREMENT, LOCAL_TYPE_NAME, MIN_SCALE, MAX_SCALE, SQL_DATA_TYPE, DATETIME_SUB,
# NUM_PREC_RADIX, INTERVAL_PRECISION, USERTYPE
_T = tuple[Any, ...]
DATATYPE_INFO_ROWS: list[_T] = [
    ("datetimeoffset", -155, 34, "'", "'", "scale", 1, 0, 3, N, 0, N, "datetimeoffset", 0, 7, -155, 0, N, N, 0),
    ("time", -154, 16, "'", "'", "scale", 1, 0, 3, N, 0, N, "time", 0, 7, -154, 0, N, N, 0),
    ("xml", -152, 0, "N'", "'", N, 1, 1, 0, N, 0, N, "xml", N, N, -152, N, N, N, 0),
    ("sql_variant", -150, 8000, N, N, N, 1, 0, 2, N, 0, N, "sql_variant", 0, 0, -150, N, 10, N, 0),
    ("uniqueidentifier", -11, 36, "'", "'", N, 1, 0, 2, N, 0, N, "uniqueidentifier", N, N, -11, N, N, N, 0),
    ("ntext", -10, 1073741823, "N'", "'", N, 1, 0, 1, N, 0, N, "ntext", N, N, -10, N, N, N, 0),
    ("nvarchar", -9, 4000, "N'", "'", "max length", 1, 0, 3, N, 0, N, "nvarchar", N, N, -9, N, N, N, 0),
    ("sysname", -9, 128, "N'", "'", N, 0, 0, 3, N, 0, N, "sysname", N, N, -9, N, N, N, 18),
    ("nchar", -8, 4000, "N'", "'", "length", 1, 0, 3, N, 0, N, "nchar", N, N, -8, N, N, N, 0),
    ("bit", -7, 1, N, N, N, 1, 0, 2, N, 0, N, "bit", 0, 0, -7, N, N, N, 16),
    ("tinyint", -6, 3, N, N, N, 1, 0, 2, 1, 0, 0, "tinyint", 0, 0, -6, N, 10, N, 5),
    ("tinyint identity", -6, 3, N, N, N, 0, 0, 2, 1, 0, 1, "tinyint identity", 0, 0, -6, N, 10, N, 5),
    ("bigint", -5, 19, N, N, N, 1, 0, 2, 0, 0, 0, "bigint", 0, 0, -5, N, 10, N, 0),
    ("bigint identity", -5, 19, N, N, N, 0, 0, 2, 0, 0, 1, "bigint identity", 0, 0, -5, N, 10, N, 0),
    ("image", -4, 2147483647, "0x", N, N, 1, 0, 0, N, 0, N, "image", N, N, -4, N, N, N, 20),
    ("varbinary", -3, 8000, "0x", N, "max length", 1, 0, 2, N, 0, N, "varbinary", N, N, -3, N, N, N, 4),
    ("binary", -2, 8000, "0x", N, "length", 1, 0, 2, N, 0, N, "binary", N, N, -2, N, N, N, 3),
    ("timestamp", -2, 8, "0x", N, N, 0, 0, 2, N, 0, N, "timestamp", N, N, -2, N, N, N, 80),
    ("text", -1, 2147483647, "'", "'", N, 1, 0, 1, N, 0, N, "text", N, N, -1, N, N, N, 19),
    ("char", 1, 8000, "'", "'", "length", 1, 0, 3, N, 0, N, "char", N, N, 1, N, N, N, 1),
    ("numeric", 2, 38, N, N, "precision,scale", 1, 0, 2, 0, 0, 0, "numeric", 0, 38, 2, N, 10, N, 10),
    ("numeric() identity", 2, 38, N, N, "precision", 0, 0, 2, 0, 0, 1, "numeric() identity", 0, 0, 2, N, 10, N, 10),
    ("decimal", 3, 38, N, N, "precision,scale", 1, 0, 2, 0, 0, 0, "decimal", 0, 38, 3, N, 10, N, 24),
    ("money", 3, 19, "$", N, N, 1, 0, 2, 0, 1, 0, "money", 4, 4, 3, N, 10, N, 11),
    ("smallmoney", 3, 10, "$", N, N, 1, 0, 2, 0, 1, 0, "smallmoney", 4, 4, 3, N, 10, N, 21),
    ("decimal() identity", 3, 38, N, N, "precision", 0, 0, 2, 0, 0, 1, "decimal() identity", 0, 0, 3, N, 10, N, 24),
    ("int", 4, 10, N, N, N, 1, 0, 2, 0, 0, 0, "int", 0, 0, 4, N, 10, N, 7),
    ("int identity", 4, 10, N, N, N, 0, 0, 2, 0, 0, 1, "int identity", 0, 0, 4, N, 10, N, 7),
    ("smallint", 5, 5, N, N, N, 1, 0, 2, 0, 0, 0, "smallint", 0, 0, 5, N, 10, N, 6),
    ("smallint identity", 5, 5, N, N, N, 0, 0, 2, 0, 0, 1, "smallint identity", 0, 0, 5, N, 10, N, 6),
    ("float", 6, 53, N, N, N, 1, 0, 2, 0, 0, 0, "float", N, N, 6, N, 2, N, 8),
    ("real", 7, 24, N, N, N, 1, 0, 2, 0, 0, 0, "real", N, N, 7, N, 2, N, 23),
    ("varchar", 12, 8000, "'", "'", "max length", 1, 0, 3, N, 0, N, "varchar", N, N, 12, N, N, N, 2),
    ("date", 91, 10, "'", "'", N, 1, 0, 3, N, 0, N, "date", N, 0, 9, 1, N, N, 0),
    ("datetime2", 93, 27, "'", "'", "scale", 1, 0, 3, N, 0, N, "datetime2", 0, 7, 9, 3, N, N, 0),
    ("datetime", 93, 23, "'", "'", N, 1, 0, 3, N, 0, N, "datetime", 3, 3, 9, 3, N, N, 12),
    ("smalldatetime", 93, 16, "'", "'", N, 1, 0, 3, N, 0, N, "smalldatetime", 0, 0, 9, 3, N, N, 22),
]


def datatype_info_rows(data_type: int) -> list[_T]:
    """Rows for ``sp_datatype_info_100 @data_type``; 0 means every type."""
    return [row for row in DATATYPE_INFO_ROWS if data_type in (0, None) or row[1] == data_type]


DESCRIBE_PARAMS_COLUMNS = [
    ResultColumn("parameter_ordinal", SqlType("int", nullable=False)),
    ResultColumn("name", SqlType("nvarchar", length=128, nullable=False)),
    ResultColumn("suggested_system_type_id", SqlType("int", nullable=False)),
    ResultColumn("suggested_system_type_name", SqlType("nvarchar", length=256)),
    ResultColumn("suggested_max_length", SqlType("smallint", nullable=False)),
    ResultColumn("suggested_precision", SqlType("tinyint", nullable=False)),
    ResultColumn("suggested_scale", SqlType("tinyint", nullable=False)),
    ResultColumn("suggested_user_type_id", SqlType("int")),
    ResultColumn("suggested_user_type_database", SYSNAME),
    ResultColumn("suggested_user_type_schema", SYSNAME),
    ResultColumn("suggested_user_type_name", SYSNAME),
    ResultColumn("suggested_assembly_qualified_type_name", SqlType("nvarchar", length=4000)),
    ResultColumn("suggested_xml_collection_id", SqlType("int")),
    ResultColumn("suggested_xml_collection_database", SYSNAME),
    ResultColumn("suggested_xml_collection_schema", SYSNAME),
    ResultColumn("suggested_xml_collection_name", SYSNAME),
    ResultColumn("suggested_is_xml_document", SqlType("bit", nullable=False)),
    ResultColumn("suggested_is_case_sensitive", SqlType("bit", nullable=False)),
    ResultColumn("suggested_is_fixed_length_clr_type", SqlType("bit", nullable=False)),
    ResultColumn("suggested_is_input", SqlType("bit", nullable=False)),
    ResultColumn("suggested_is_output", SqlType("bit", nullable=False)),
    ResultColumn("formal_parameter_name", SYSNAME),
    ResultColumn("suggested_tds_type_id", SqlType("int", nullable=False)),
    ResultColumn("suggested_tds_length", SqlType("int", nullable=False)),
]

# system_type_id, max_length (bytes), tds type id (nullable variant), tds length
_SYSTEM_TYPES: dict[str, tuple[int, int, int, int]] = {
    "tinyint": (48, 1, 38, 1),
    "smallint": (52, 2, 38, 2),
    "int": (56, 4, 38, 4),
    "bigint": (127, 8, 38, 8),
    "bit": (104, 1, 104, 1),
    "real": (59, 4, 109, 4),
    "float": (62, 8, 109, 8),
    "decimal": (106, 17, 106, 17),
    "numeric": (108, 17, 108, 17),
    "money": (60, 8, 110, 8),
    "smallmoney": (122, 4, 110, 4),
    "date": (40, 3, 40, 3),
    "time": (41, 5, 41, 5),
    "datetime2": (42, 8, 42, 8),
    "datetimeoffset": (43, 10, 43, 10),
    "datetime": (61, 8, 111, 8),
    "smalldatetime": (58, 4, 111, 4),
    "uniqueidentifier": (36, 16, 36, 16),
    "char": (175, 0, 175, 0),
    "varchar": (167, 0, 167, 0),
    "nchar": (239, 0, 239, 0),
    "nvarchar": (231, 0, 231, 0),
    "binary": (173, 0, 173, 0),
    "varbinary": (165, 0, 165, 0),
}


def type_display_name(t: SqlType) -> str:
    """SQL Server's spelling with arguments: 'nvarchar(50)', 'decimal(18,2)', 'datetime2(7)'."""
    name = t.name.lower()
    if name in ("char", "varchar", "nchar", "nvarchar", "binary", "varbinary"):
        return f"{name}({'max' if t.length == -1 else t.length or 1})"
    if name in ("decimal", "numeric"):
        return f"{name}({t.precision or 18},{t.scale or 0})"
    if name in ("time", "datetime2", "datetimeoffset"):
        return f"{name}({7 if t.scale is None else t.scale})"
    return name


def describe_row(ordinal: int, name: str, t: SqlType) -> tuple[Any, ...]:
    key = t.name.lower()
    if key not in _SYSTEM_TYPES:
        raise ValueError(f"cannot describe a parameter of type {t.name!r}")
    type_id, max_len, tds_id, tds_len = _SYSTEM_TYPES[key]
    precision, scale = 0, 0
    if key in ("char", "varchar", "binary", "varbinary", "nchar", "nvarchar"):
        unit = 2 if key.startswith("n") else 1
        max_len = -1 if t.length == -1 else (t.length or 1) * unit
        tds_len = 0xFFFF if t.length == -1 else max_len
    elif key in ("decimal", "numeric"):
        precision, scale = t.precision or 18, t.scale or 0
    elif key in ("time", "datetime2", "datetimeoffset"):
        scale = 7 if t.scale is None else t.scale
        precision = {"time": 8, "datetime2": 19, "datetimeoffset": 26}[key] + (scale + 1 if scale else 0)
    elif key in _INT_PRECISION:
        precision = _INT_PRECISION[key]
    return (
        ordinal,
        name,
        type_id,
        type_display_name(t),
        max_len,
        precision,
        scale,
        N,
        N,
        N,
        N,
        N,
        N,
        N,
        N,
        N,
        False,
        False,
        False,
        True,
        False,
        name,
        tds_id,
        tds_len,
    )


_INT_PRECISION = {
    "tinyint": 3,
    "smallint": 5,
    "int": 10,
    "bigint": 19,
    "real": 24,
    "float": 53,
    "money": 19,
    "smallmoney": 10,
    "datetime": 23,
    "smalldatetime": 16,
    "date": 10,
    "bit": 1,
}
