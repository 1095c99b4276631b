"""Driver discovery: Driver 18 from mssql-python-odbc by path, FreeTDS from Debian, clear errors."""

import os

import pyodbc
import pytest

from dtaas_dagster.sqlserver.drivers import msodbc18_driver_path, resolve_driver


def test_auto_prefers_driver_18_from_the_pip_package_and_it_loads() -> None:
    path = msodbc18_driver_path()
    assert path is not None and os.path.exists(path) and "libmsodbcsql-18" in path
    driver = resolve_driver("auto")
    assert (driver.value, driver.family) == (path, "msodbc18")
    # unixODBC loads it in place: a connection attempt to a closed port fails in the driver, not in the loader
    with pytest.raises(pyodbc.Error) as raised:
        pyodbc.connect(f"DRIVER={{{path}}};SERVER=tcp:127.0.0.1,1;UID=u;PWD=p;Encrypt=no;LoginTimeout=1", timeout=1)
    assert "Can't open lib" not in str(raised.value) and "ODBC Driver 18" in str(raised.value)


def test_freetds_is_found_by_name_or_path() -> None:
    driver = resolve_driver("freetds")
    assert driver.is_freetds and driver.value in (
        "FreeTDS",
        "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so",
        "/usr/lib/aarch64-linux-gnu/odbc/libtdsodbc.so",
    )


def test_a_custom_driver_is_used_verbatim() -> None:
    driver = resolve_driver("ODBC Driver 17 for SQL Server")
    assert (driver.value, driver.family) == ("ODBC Driver 17 for SQL Server", "custom")
