"""The demo database ``sales``: four tables, a few thousand rows, the same at every start.

Rows come from ``random.Random(DEMO_SEED)`` and dates from a fixed base date, so
two starts of the double serve identical data. The database allows snapshot
isolation and has CDC enabled on every table, through the same T-SQL
procedures a client would call (``sys.sp_cdc_enable_db``,
``sys.sp_cdc_enable_table``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

DEMO_DATABASE = "sales"
DEMO_SEED = 20240101
BASE_TIME = datetime(2024, 1, 1, 8, 0, 0)
CUSTOMERS, PRODUCTS, ORDERS = 500, 200, 1500

_FIRST_NAMES = ["Anna", "José", "Zoë", "Łukasz", "Søren", "Ana", "Émile", "Chloé", "Björn", "Ines",
                "Юлия", "Дмитрий", "王芳", "李伟", "さくら", "太郎", "민준", "Αθηνά", "فاطمة", "अनन्या"]  # fmt: skip
_LAST_NAMES = ["Müller", "García", "Nowak", "Østergaard", "Dubois", "Иванов", "陈", "山田", "김",
               "Παπαδόπουλος", "Smith", "O'Brien", "Nguyễn", "Kovač", "Şahin"]  # fmt: skip
_COUNTRIES = ["DE", "ES", "PL", "DK", "FR", "RU", "CN", "JP", "KR", "GR", "US", "IE", "VN", "HR", "TR"]
_PRODUCT_WORDS = ["Widget", "Gadget", "Kaffeemühle", "Thé vert", "Чайник", "茶杯", "Bolígrafo", "Lampa"]
_STATUSES = ["new", "paid", "shipped", "delivered", "cancelled"]


@dataclass(frozen=True)
class DemoTable:
    """One demo table: T-SQL column definitions, primary key and its rows."""

    name: str
    columns: list[tuple[str, str]]  # (column, T-SQL type text)
    primary_key: list[str]
    data: pa.Table

    @property
    def create_sql(self) -> str:
        cols = ", ".join(f"[{name}] {type_text}" for name, type_text in self.columns)
        pk = ", ".join(f"[{c}]" for c in self.primary_key)
        return f"CREATE TABLE [dbo].[{self.name}] ({cols}, CONSTRAINT [PK_{self.name}] PRIMARY KEY ({pk}))"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def _customers(rng: random.Random) -> DemoTable:
    rows: dict[str, list[Any]] = {k: [] for k in ("customer_id", "name", "email", "country", "created_at",
                                                  "is_active", "customer_guid", "notes")}  # fmt: skip
    for i in range(1, CUSTOMERS + 1):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        rows["customer_id"].append(i)
        rows["name"].append(f"{first} {last}")
        rows["email"].append(f"customer{i}@example.com")
        rows["country"].append(rng.choice(_COUNTRIES))
        rows["created_at"].append(
            BASE_TIME + timedelta(seconds=rng.randrange(0, 3600 * 24 * 365), microseconds=rng.randrange(10**6))
        )
        rows["is_active"].append(rng.random() > 0.1)
        rows["customer_guid"].append(_guid(rng))
        rows["notes"].append(None if rng.random() < 0.7 else "VIP; " * rng.randrange(1, 400))
    schema = pa.schema([("customer_id", pa.int32()), ("name", pa.string()), ("email", pa.string()),
                        ("country", pa.string()), ("created_at", pa.timestamp("us")), ("is_active", pa.bool_()),
                        ("customer_guid", pa.string()), ("notes", pa.string())])  # fmt: skip
    columns = [("customer_id", "int IDENTITY(1,1) NOT NULL"), ("name", "nvarchar(100) NOT NULL"),
               ("email", "varchar(200) NOT NULL"), ("country", "char(2) NOT NULL"),
               ("created_at", "datetime2(7) NOT NULL"), ("is_active", "bit NOT NULL"),
               ("customer_guid", "uniqueidentifier NOT NULL"), ("notes", "varchar(max) NULL")]  # fmt: skip
    return DemoTable("customers", columns, ["customer_id"], pa.table(rows, schema=schema))


def _products(rng: random.Random) -> DemoTable:
    rows: dict[str, list[Any]] = {
        k: [] for k in ("product_id", "name", "price", "list_price", "introduced", "discontinued")
    }
    for i in range(1, PRODUCTS + 1):
        price = Decimal(rng.randrange(99, 250_000)) / 100
        rows["product_id"].append(i)
        rows["name"].append(f"{rng.choice(_PRODUCT_WORDS)} {i:03d}")
        rows["price"].append(price)
        rows["list_price"].append((price * Decimal("1.19")).quantize(Decimal("0.0001")))
        rows["introduced"].append(date(2015, 1, 1) + timedelta(days=rng.randrange(0, 3000)))
        rows["discontinued"].append(rng.random() < 0.05)
    schema = pa.schema([("product_id", pa.int32()), ("name", pa.string()), ("price", pa.decimal128(18, 2)),
                        ("list_price", pa.decimal128(19, 4)), ("introduced", pa.date32()),
                        ("discontinued", pa.bool_())])  # fmt: skip
    columns = [("product_id", "int IDENTITY(1,1) NOT NULL"), ("name", "nvarchar(200) NOT NULL"),
               ("price", "decimal(18,2) NOT NULL"), ("list_price", "money NOT NULL"),
               ("introduced", "date NOT NULL"), ("discontinued", "bit NOT NULL")]  # fmt: skip
    return DemoTable("products", columns, ["product_id"], pa.table(rows, schema=schema))


def _orders_and_lines(rng: random.Random, products: pa.Table) -> tuple[DemoTable, DemoTable]:
    prices = products.column("price").to_pylist()
    orders: dict[str, list[Any]] = {
        k: [] for k in ("order_id", "customer_id", "ordered_at", "ship_date", "status", "total", "notes")
    }
    lines: dict[str, list[Any]] = {k: [] for k in ("order_id", "line_no", "product_id", "quantity", "unit_price")}
    for order_id in range(1, ORDERS + 1):
        ordered_at = BASE_TIME + timedelta(minutes=rng.randrange(0, 60 * 24 * 400), microseconds=rng.randrange(10**6))
        total = Decimal(0)
        for line_no in range(1, rng.randrange(1, 5) + 1):
            product_id = rng.randrange(1, PRODUCTS + 1)
            quantity = rng.randrange(1, 10)
            unit_price = prices[product_id - 1]
            total += unit_price * quantity
            for key, value in zip(lines, (order_id, line_no, product_id, quantity, unit_price)):
                lines[key].append(value)
        orders["order_id"].append(order_id)
        orders["customer_id"].append(rng.randrange(1, CUSTOMERS + 1))
        orders["ordered_at"].append(ordered_at)
        orders["ship_date"].append(
            None if rng.random() < 0.2 else (ordered_at + timedelta(days=rng.randrange(1, 9))).date()
        )
        orders["status"].append(rng.choice(_STATUSES))
        orders["total"].append(total.quantize(Decimal("0.0001")))
        orders["notes"].append(None if rng.random() < 0.8 else f"Bitte klingeln / 请敲门 #{order_id}")
    order_schema = pa.schema([("order_id", pa.int32()), ("customer_id", pa.int32()), ("ordered_at", pa.timestamp("us")),
                              ("ship_date", pa.date32()), ("status", pa.string()), ("total", pa.decimal128(19, 4)),
                              ("notes", pa.string())])  # fmt: skip
    order_columns = [("order_id", "int IDENTITY(1,1) NOT NULL"), ("customer_id", "int NOT NULL"),
                     ("ordered_at", "datetime2(7) NOT NULL"), ("ship_date", "date NULL"),
                     ("status", "varchar(20) NOT NULL"), ("total", "money NOT NULL"), ("notes", "nvarchar(max) NULL")]  # fmt: skip
    line_schema = pa.schema([("order_id", pa.int32()), ("line_no", pa.int32()), ("product_id", pa.int32()),
                             ("quantity", pa.int32()), ("unit_price", pa.decimal128(18, 2))])  # fmt: skip
    line_columns = [("order_id", "int NOT NULL"), ("line_no", "int NOT NULL"), ("product_id", "int NOT NULL"),
                    ("quantity", "int NOT NULL"), ("unit_price", "decimal(18,2) NOT NULL")]  # fmt: skip
    return (
        DemoTable("orders", order_columns, ["order_id"], pa.table(orders, schema=order_schema)),
        DemoTable("order_lines", line_columns, ["order_id", "line_no"], pa.table(lines, schema=line_schema)),
    )


def demo_tables() -> list[DemoTable]:
    """The four demo tables with their rows (deterministic)."""
    rng = random.Random(DEMO_SEED)
    customers = _customers(rng)
    products = _products(rng)
    orders, order_lines = _orders_and_lines(rng, products.data)
    return [customers, products, orders, order_lines]


def seed_demo(engine: Any) -> None:
    """Create ``sales`` in ``engine``, load the demo rows, allow snapshot isolation, enable CDC everywhere."""
    from dtaas_dagster_tests.sqlserver_double.process import run_tsql

    run_tsql(engine, f"CREATE DATABASE [{DEMO_DATABASE}]")
    run_tsql(engine, f"ALTER DATABASE [{DEMO_DATABASE}] SET ALLOW_SNAPSHOT_ISOLATION ON")
    tables = demo_tables()
    for table in tables:  # CREATE TABLE in T-SQL keeps IDENTITY; the rows go in through the Arrow seeding path
        run_tsql(engine, table.create_sql, database=DEMO_DATABASE)
        # identity values are generated 1..n in row order, which is what the data holds
        identity = [name for name, type_text in table.columns if "IDENTITY" in type_text.upper()]
        engine.seed_table(DEMO_DATABASE, "dbo", table.name, table.data.drop_columns(identity), create=False)
    run_tsql(engine, "EXEC sys.sp_cdc_enable_db", database=DEMO_DATABASE)
    for table in tables:
        run_tsql(
            engine,
            f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'{table.name}', "
            "@role_name = NULL, @supports_net_changes = 1",
            database=DEMO_DATABASE,
        )
