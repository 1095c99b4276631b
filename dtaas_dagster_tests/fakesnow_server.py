"""fakesnow's server (the real snowflake-connector-python over HTTP) as a child process, with faults.

    python -m dtaas_dagster_tests.fakesnow_server --port 0 --control /tmp/dir

It runs fakesnow's own ASGI app (``fakesnow.server.app``) under uvicorn on
127.0.0.1, unchanged, behind one ASGI middleware that lets a test make the
server behave like a Snowflake having a bad moment:

- every SQL text a client sends is appended to ``<control>/statements.log``
  (one JSON string per line), so a test can check what was (not) sent;
- ``<control>/faults.json`` holds rules ``{"match": regex, "action": "error" |
  "hang", "times": n, "skip": k, "code": "000630", "message": ...}``. ``match`` is searched
  (case-insensitive) in the SQL text, or is ``"UPLOAD"`` for the file upload
  of a PUT. ``error`` answers like Snowflake does for a failed statement
  (``success: false`` with the error code); ``hang`` holds the request while the
  rule is in the file (at most 120 s), after writing ``<control>/hits.log``, so
  a test can kill the client mid-statement. ``skip`` lets the first k matches
  through; ``times`` counts down; at 0 the rule is gone.

The server binds the port given (0 = a free one) and prints ``PORT <n>`` once
it listens. Nothing here changes what fakesnow does with a statement it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

Scope = dict[str, Any]


class Faults:
    """The rules file and the logs of one server."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.rules_path = control / "faults.json"

    def _rules(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.rules_path.read_text() or "[]"))
        except (FileNotFoundError, ValueError):
            return []

    def take(self, subject: str) -> dict[str, Any] | None:
        """The first rule matching ``subject``, its count taken down (and removed at 0)."""
        rules = self._rules()
        for index, rule in enumerate(rules):
            if (
                rule["match"] == "UPLOAD"
                and subject != "UPLOAD"
                or rule["match"] != "UPLOAD"
                and not re.search(rule["match"], subject, re.IGNORECASE)
            ):
                continue
            rule = dict(rule)
            if int(rule.get("skip", 0)) > 0:  # let the first `skip` matches through
                rules[index] = {**rule, "skip": int(rule["skip"]) - 1}
                self.rules_path.write_text(json.dumps(rules))
                return None
            remaining = int(rule.get("times", 1)) - 1
            if remaining <= 0 and rule.get("action") != "hang":
                rules.pop(index)
            else:
                rules[index] = {**rule, "times": max(remaining, 1)}
            self.rules_path.write_text(json.dumps(rules))
            return rule
        return None

    def still_present(self, rule: dict[str, Any]) -> bool:
        return any(r["match"] == rule["match"] for r in self._rules())

    def log(self, name: str, entry: Any) -> None:
        with open(self.control / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def error_body(rule: dict[str, Any]) -> bytes:
    code = str(rule.get("code", "000630"))
    message = rule.get("message", "Statement reached its statement or warehouse timeout (injected by the test)")
    return json.dumps(
        {"data": {"errorCode": code, "sqlState": "57014"}, "code": code, "message": message, "success": False}
    ).encode()


class FaultMiddleware:
    def __init__(self, app: Any, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if not (path.startswith("/queries/v1/query-request") or path.startswith("/fs_bucket/")):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        subject = "UPLOAD" if path.startswith("/fs_bucket/") else self._sql(scope, body)
        if subject != "UPLOAD":
            self.faults.log("statements.log", subject)
        rule = self.faults.take(subject)
        if rule is not None:
            self.faults.log("hits.log", {"match": rule["match"], "subject": subject[:200], "at": time.time()})
            if rule.get("action") == "hang":
                deadline = time.monotonic() + 120
                while self.faults.still_present(rule) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            else:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": error_body(rule)})
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    def _sql(scope: Scope, body: bytes) -> str:
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-encoding") == b"gzip":
            body = gzip.decompress(body)
        try:
            return str(json.loads(body).get("sqlText", ""))
        except ValueError:
            return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control", type=Path, required=True)
    args = parser.parse_args()
    args.control.mkdir(parents=True, exist_ok=True)

    import fakesnow.server
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = FaultMiddleware(fakesnow.server.app, Faults(args.control))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
