"""Find an ODBC driver for SQL Server without anyone editing odbcinst.ini.

Microsoft's ODBC Driver 18 ships on PyPI inside ``mssql-python-odbc``; unixODBC
loads it in place when the connection string names the shared library by path
(``DRIVER={/path/libmsodbcsql-18.x.so}``). FreeTDS is found through the
``[FreeTDS]`` entry Debian's ``tdsodbc`` package registers, or by its library path.

``driver`` in the source config may be:

- ``auto`` (default): Driver 18 from ``mssql-python-odbc``, else a registered
  "ODBC Driver 18 for SQL Server", else FreeTDS;
- ``msodbc18``: Driver 18 only;
- ``freetds``: FreeTDS only;
- anything else: used verbatim (a name registered in odbcinst.ini or a path).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path

_FREETDS_PATHS = (
    "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so",
    "/usr/lib/aarch64-linux-gnu/odbc/libtdsodbc.so",
    "/usr/lib64/libtdsodbc.so",
    "/usr/local/lib/libtdsodbc.so",
)
_MSODBC_REGISTERED_NAME = "ODBC Driver 18 for SQL Server"


class OdbcDriverNotFound(RuntimeError):
    """No usable ODBC driver for SQL Server was found on this machine."""


@dataclass(frozen=True)
class OdbcDriver:
    """An ODBC driver as it goes into ``DRIVER={...}``, and which family it is."""

    value: str
    family: str  # "msodbc18" or "freetds" or "custom"

    @property
    def is_freetds(self) -> bool:
        return self.family == "freetds"


def msodbc18_driver_path() -> str | None:
    """Path of libmsodbcsql-18 inside the installed ``mssql-python-odbc`` package, if any."""
    spec = importlib.util.find_spec("mssql_python_odbc")
    if spec is None or not spec.submodule_search_locations:
        return None
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    arch = "x86_64" if platform.machine() in ("x86_64", "AMD64") else "arm64"
    candidates = sorted(
        glob.glob(str(package_dir / "libs" / "linux" / "debian_ubuntu" / arch / "lib" / "libmsodbcsql-18*.so*"))
    )
    return candidates[-1] if candidates else None


def _registered_drivers() -> set[str]:
    names: set[str] = set()
    for ini in ("/etc/odbcinst.ini", os.path.expanduser("~/.odbcinst.ini")):
        try:
            text = Path(ini).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names.update(line.strip()[1:-1] for line in text.splitlines() if line.strip().startswith("["))
    return names


def freetds_driver() -> str | None:
    """ "FreeTDS" when registered, else the library path when it exists."""
    if "FreeTDS" in _registered_drivers():
        return "FreeTDS"
    return next((path for path in _FREETDS_PATHS if os.path.exists(path)), None)


def resolve_driver(choice: str = "auto") -> OdbcDriver:
    """Turn the config's ``driver`` setting into a DRIVER value, or explain what to install."""
    normalized = choice.strip().lower()
    if normalized in ("auto", "msodbc18"):
        path = msodbc18_driver_path()
        if path:
            return OdbcDriver(path, "msodbc18")
        if _MSODBC_REGISTERED_NAME in _registered_drivers():
            return OdbcDriver(_MSODBC_REGISTERED_NAME, "msodbc18")
        if normalized == "msodbc18":
            raise OdbcDriverNotFound(
                "ODBC Driver 18 for SQL Server was not found: install it with "
                "`pip install mssql-python-odbc` (and `apt-get install -y unixodbc`), "
                "or set driver: freetds in the source config"
            )
    if normalized in ("auto", "freetds"):
        freetds = freetds_driver()
        if freetds:
            return OdbcDriver(freetds, "freetds")
        raise OdbcDriverNotFound(
            "no ODBC driver for SQL Server was found: `pip install mssql-python-odbc` "
            "for Microsoft's Driver 18, or `apt-get install -y tdsodbc` for FreeTDS"
        )
    family = "freetds" if "tds" in normalized and "msodbc" not in normalized else "custom"
    return OdbcDriver(choice, family)
