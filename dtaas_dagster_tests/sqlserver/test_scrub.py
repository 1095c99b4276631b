"""The password scrubber: whole-token secrets and connection-string PWD= values, nothing else."""

import pytest

from dtaas_dagster.sqlserver.errors import SqlServerUnreachable, scrub, translate_driver_error

TIMEOUT = "[Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired"


@pytest.mark.parametrize("password", sorted({ch for ch in TIMEOUT if ch.isalnum()} | {"ex", "time", "SQL Ser"}))
def test_a_short_password_inside_other_words_is_neither_replaced_nor_located(password: str) -> None:
    # Before: "x" turned "expired" into "e***pired", which showed the password and where it occurs.
    assert scrub(TIMEOUT, password) == TIMEOUT


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("password 'hunter2' was rejected", "hunter2", "password '***' was rejected"),
        ("hunter2", "hunter2", "***"),
        ("a hunter2, then hunter2.", "hunter2", "a ***, then ***."),
        ("hunter22 and xhunter2 are other words", "hunter2", "hunter22 and xhunter2 are other words"),
        ("pass a.b*c here", "a.b*c", "pass *** here"),  # regex characters are literal
        ("pass aXb*c here", "a.b*c", "pass aXb*c here"),
        ("user x: Login failed for user 'x'.", "x", "user ***: Login failed for user '***'."),
    ],
)
def test_a_secret_standing_as_a_token_is_replaced(text: str, secret: str, expected: str) -> None:
    assert scrub(text, secret) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DRIVER={x};PWD={a;b}}c};UID=u", "DRIVER={x};PWD=***;UID=u"),
        ("SERVER=s;Pwd = plain text;UID=u", "SERVER=s;Pwd=***;UID=u"),
        ("SERVER=s;password=last", "SERVER=s;password=***"),
        ("SQLPWD=flag;UID=u", "SQLPWD=flag;UID=u"),  # not a PWD key: the key must start a word
    ],
)
def test_connection_string_password_values_are_replaced_whatever_the_password(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_driver_messages_keep_their_words_with_a_one_letter_password() -> None:
    error = translate_driver_error(
        Exception("HYT00", TIMEOUT),
        source="sales",
        address="db:1433",
        user="etl",
        password_env="SALES_PW",
        password="x",
    )
    assert isinstance(error, SqlServerUnreachable)
    assert str(error).endswith(f"Driver said: {TIMEOUT}")
