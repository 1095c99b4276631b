"""Running client requests on an engine session and streaming the answers.

SQL batches go to ``session.execute`` whole; RPCs are unpacked here
(sp_executesql, sp_prepare/sp_prepexec/sp_execute/sp_unprepare, the system
procedures the drivers call by name) and any other procedure is handed to the
engine as ``EXEC name @p = @p, ...`` with its parameters bound.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..engine_api import EngineSession, Param, ResultColumn, SqlServerError, StatementResult
from . import tokens as tk
from .packets import ATTENTION, ConnectionClosed, PacketIO
from .reply import Reply
from .rowencode import encode_rows
from .rpc import RpcCall, parse_rpc_batch, skip_all_headers
from .system_procs import DATATYPE_INFO_COLUMNS, DESCRIBE_PARAMS_COLUMNS, datatype_info_rows, describe_row

if TYPE_CHECKING:
    from ..faults import Faults

log = logging.getLogger(__name__)
CHUNK_ROWS = 32768
CMD_SELECT = 0xC1
ENV_KINDS = {"begin_tran": tk.ENV_BEGIN_TRAN, "commit_tran": tk.ENV_COMMIT_TRAN, "rollback_tran": tk.ENV_ROLLBACK_TRAN}
TM_BEGIN, TM_COMMIT, TM_ROLLBACK, TM_SAVE, TM_GET_DTC = 5, 7, 8, 9, 0
DECLARED_NAME = re.compile(r"(@[\w@#$]+)")
# FreeTDS sends the type-info procedure as a language batch: "sp_datatype_info_100 93,3"
DATATYPE_INFO_BATCH = re.compile(
    r"^\s*(?:exec(?:ute)?\s+)?(?:\[?sys\]?\.)?\[?sp_datatype_info(?:_100)?\]?"
    r"(?:\s+(?:@data_type\s*=\s*)?(-?\d+))?(?:\s*,\s*(?:@odbcver\s*=\s*)?\d+)?\s*;?\s*$",
    re.IGNORECASE,
)


class Cancelled(Exception):
    """The client sent ATTENTION while a result was streaming."""


class DropConnection(Exception):
    """A fault asked to cut the connection."""


@dataclass
class RequestHandler:
    io: PacketIO
    session: EngineSession
    faults: Faults
    server_name: str
    spid: int
    prepared: dict[int, tuple[str, str]] = field(default_factory=dict)
    next_handle: int = 1
    log_traffic: Callable[[str, str], None] | None = None  # (kind, text), see DRIVER_TRAFFIC.md

    # --- entry points ---------------------------------------------------------
    def sql_batch(self, payload: bytes) -> None:
        pos, _descriptor = skip_all_headers(payload)
        sql = payload[pos:].decode("utf-16-le")
        self._trace("batch", sql)
        reply = Reply(self.io)
        type_info = DATATYPE_INFO_BATCH.match(sql)
        try:
            if type_info:
                self._small_result(
                    reply, DATATYPE_INFO_COLUMNS, datatype_info_rows(int(type_info.group(1) or 0)), token=tk.TOKEN_DONE
                )
            else:
                self._run(reply, sql, None, in_proc=False)
        except Cancelled:
            reply.done(tk.DONE_ATTN)  # the reply's last token: the cancel acknowledgement
        reply.finish()

    def rpc(self, payload: bytes) -> None:
        reply = Reply(self.io)
        try:
            calls, _descriptor = parse_rpc_batch(payload)
        except (ValueError, OverflowError, IndexError, struct.error) as exc:
            log.warning("undecodable RPC request: %s", exc)
            self._error(
                reply, SqlServerError(8009, f"The incoming RPC request could not be decoded: {exc}"), tk.TOKEN_DONE
            )
            reply.finish()
            return
        try:
            for call in calls:
                self._trace("rpc", call.name)
                self._call(reply, call)
        except Cancelled:
            reply.done(tk.DONE_ATTN)  # the reply's last token: the cancel acknowledgement
        reply.finish()

    def unsupported(self, ptype: int) -> None:
        """A request type the double does not implement (e.g. bulk load): an error, not a hang."""
        reply = Reply(self.io)
        what = "Bulk load (TDS packet type 7)" if ptype == 7 else f"TDS packet type {ptype:#x}"
        self._error(
            reply,
            SqlServerError(4819, f"{what} is not supported by the SQL Server double; use INSERT statements instead."),
            tk.TOKEN_DONE,
        )
        reply.finish()

    def attention(self) -> None:
        """ATTENTION with nothing running: acknowledge it."""
        self.io.write_message(4, tk.done(tk.DONE_ATTN))

    # --- statements -------------------------------------------------------------
    def _run(
        self,
        reply: Reply,
        sql: str,
        params: Mapping[str, Param] | None,
        *,
        in_proc: bool,
        seen: list[StatementResult] | None = None,
    ) -> bool:
        """Run a batch or parameterised statement; False when an error aborted it.

        ``seen`` collects the StatementResults (for a procedure's return status and OUTPUT values).
        """
        token = tk.TOKEN_DONEINPROC if in_proc else tk.TOKEN_DONE
        injected = self.faults.statement_error(sql, self.spid)
        if injected is not None:
            self._error(reply, injected, token)
            return not injected.aborts_batch
        limit = self.faults.row_limit(sql)
        try:
            results = iter(self.session.execute(sql, params))
        except SqlServerError as exc:
            self._error(reply, exc, token)
            return not exc.aborts_batch
        except Exception as exc:  # noqa: BLE001 - a bug in the engine must not kill the connection
            self._unexpected(reply, exc, token)
            return False
        return self._drain(reply, results, token, limit, seen)

    def _drain(
        self,
        reply: Reply,
        results: Iterator[StatementResult],
        token: int,
        limit: int | None,
        seen: list[StatementResult] | None,
    ) -> bool:
        while True:
            try:
                result = next(results)
                if seen is not None:
                    seen.append(result)
                limit = self._result(reply, result, token, limit)
            except StopIteration:
                return True
            except (Cancelled, DropConnection, ConnectionClosed):
                raise
            except SqlServerError as exc:
                self._error(reply, exc, token)
                if exc.aborts_batch:
                    return False
            except Exception as exc:  # noqa: BLE001
                self._unexpected(reply, exc, token)
                return False

    def _status(self) -> int:
        try:
            return tk.DONE_INXACT if self.session.in_transaction else 0
        except Exception:  # noqa: BLE001 - engines under construction
            return 0

    def _result(self, reply: Reply, result: StatementResult, token: int, limit: int | None) -> int | None:
        for change in result.env_changes:
            reply.write(self._envchange(change))
        for text in result.messages:
            number = 5701 if text.startswith("Changed database context") else 0
            reply.write(tk.message(error=False, number=number, state=1, severity=0, text=text, server=self.server_name))
        if result.result_set is None:
            reply.done(self._status(), result.rowcount, token=token)
            return limit
        columns = result.result_set.columns
        reply.write(tk.colmetadata(columns))
        sent, limit = self._stream(reply, columns, result.result_set.batches, limit)
        rowcount = result.rowcount if result.rowcount is not None else sent
        reply.done(self._status(), rowcount, token=token, cur_cmd=CMD_SELECT)
        return limit

    def _stream(
        self, reply: Reply, columns: list[ResultColumn], batches: Iterable[pa.RecordBatch], limit: int | None
    ) -> tuple[int, int | None]:
        """Send the rows; returns (rows sent, rows left before an armed connection drop)."""
        types = [c.type for c in columns]
        sent = 0
        for chunk in _chunks(batches):
            if limit is not None and chunk.num_rows >= limit:
                reply.write(encode_rows(chunk.slice(0, limit), types))
                reply.abandon()
                raise DropConnection(f"fault: dropped after {sent + limit} rows")
            reply.write(encode_rows(chunk, types))
            sent += chunk.num_rows
            limit = None if limit is None else limit - chunk.num_rows
            self._check_attention()
        return sent, limit

    def _check_attention(self) -> None:
        if not self.io.transport.has_pending():
            return
        ptype, _status, _payload = self.io.read_packet()
        if ptype == ATTENTION:
            raise Cancelled()
        raise ConnectionClosed(f"client sent packet type {ptype:#x} in the middle of a reply")

    def _envchange(self, change: tuple) -> bytes:
        kind = change[0]
        if kind == "database":
            return tk.envchange_text(tk.ENV_DATABASE, change[1], change[2] if len(change) > 2 else "")
        descriptor = struct.pack("<Q", change[1] or 0)
        if kind == "begin_tran":
            return tk.envchange_bytes(tk.ENV_BEGIN_TRAN, descriptor, b"")
        return tk.envchange_bytes(ENV_KINDS[kind], b"", descriptor)

    def _error(self, reply: Reply, exc: SqlServerError, token: int, proc: str = "") -> None:
        reply.write(
            tk.message(
                error=True,
                number=exc.number,
                state=exc.state,
                severity=exc.severity,
                text=exc.message,
                server=self.server_name,
                proc=proc,
            )
        )
        for change in getattr(exc, "env_changes", []):
            reply.write(self._envchange(change))
        reply.done(tk.DONE_ERROR | self._status(), token=token)

    def _unexpected(self, reply: Reply, exc: Exception, token: int) -> None:
        log.exception("SQL Server double: unexpected error in the engine")
        err = SqlServerError(50000, f"SQL Server double internal error: {type(exc).__name__}: {exc}")
        self._error(reply, err, token)

    def _trace(self, kind: str, text: str) -> None:
        if self.log_traffic is not None:
            self.log_traffic(kind, text)

    # --- RPC ------------------------------------------------------------------------
    def _call(self, reply: Reply, call: RpcCall) -> None:
        name = call.name.lower().split(".")[-1].strip("[]")
        handler = {
            "sp_executesql": self._sp_executesql,
            "sp_prepexec": self._sp_prepexec,
            "sp_prepare": self._sp_prepare,
            "sp_execute": self._sp_execute,
            "sp_unprepare": self._sp_unprepare,
            "sp_datatype_info_100": self._sp_datatype_info,
            "sp_datatype_info": self._sp_datatype_info,
            "sp_describe_undeclared_parameters": self._sp_describe_undeclared,
        }.get(name, self._generic_proc)
        outputs: list[tuple[int, Param, Any]] = []
        try:
            status = handler(reply, call, outputs)
        except SqlServerError as exc:
            self._error(reply, exc, tk.TOKEN_DONEINPROC, proc=call.name)
            status = 1
        except (Cancelled, DropConnection, ConnectionClosed):
            raise
        except Exception as exc:  # noqa: BLE001 - report, keep the connection
            self._unexpected(reply, exc, tk.TOKEN_DONEINPROC)
            status = 1
        reply.write(tk.return_status(status))
        for ordinal, param, value in outputs:
            reply.write(tk.return_value(ordinal, param.name, param.type, value))
        reply.done(self._status(), token=tk.TOKEN_DONEPROC)

    def _bound(self, decl: str | None, values: list[Param]) -> dict[str, Param]:
        names = DECLARED_NAME.findall(decl or "")
        bound = {}
        for i, p in enumerate(values):
            name = p.name
            if re.fullmatch(r"@P\d+", name) and i < len(names) and names[i] != name:
                name = names[i]  # positional value: name it from the declaration
            bound[name] = Param(name, p.type, p.value, p.output)
        return bound

    def _sp_executesql(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        if not call.params:
            raise SqlServerError(201, "Procedure or function 'sp_executesql' expects parameter '@statement'.")
        sql = str(call.params[0].value or "")
        decl = call.params[1].value if len(call.params) > 1 else ""
        self._trace("sp_executesql", sql)
        return 0 if self._run(reply, sql, self._bound(decl, call.params[2:]), in_proc=True) else 1

    def _register(self, decl: str | None, sql: str) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.prepared[handle] = (sql, decl or "")
        return handle

    def _sp_prepexec(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        handle_param, decl, sql = call.params[0], call.params[1].value, str(call.params[2].value or "")
        self._trace("sp_prepexec", sql)
        handle = self._register(decl, sql)
        outputs.append((0, handle_param, handle))
        return 0 if self._run(reply, sql, self._bound(decl, call.params[3:]), in_proc=True) else 1

    def _sp_prepare(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        handle_param, decl, sql = call.params[0], call.params[1].value, str(call.params[2].value or "")
        self._trace("sp_prepare", sql)
        outputs.append((0, handle_param, self._register(decl, sql)))
        return 0

    def _sp_execute(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        handle = call.params[0].value
        if handle not in self.prepared:
            raise SqlServerError(8179, f"Could not find prepared statement with handle {handle}.")
        sql, decl = self.prepared[handle]
        return 0 if self._run(reply, sql, self._bound(decl, call.params[1:]), in_proc=True) else 1

    def _sp_unprepare(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        self.prepared.pop(call.params[0].value if call.params else None, None)
        return 0

    def _sp_datatype_info(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        data_type = call.params[0].value if call.params else 0
        self._small_result(reply, DATATYPE_INFO_COLUMNS, datatype_info_rows(data_type or 0))
        return 0

    def _sp_describe_undeclared(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        sql = str(call.params[0].value or "")
        self._trace("sp_describe_undeclared_parameters", sql)
        described = self.session.describe_undeclared_parameters(sql)
        rows = [describe_row(i + 1, name, t) for i, (name, t) in enumerate(described)]
        self._small_result(reply, DESCRIBE_PARAMS_COLUMNS, rows)
        return 0

    def _small_result(
        self, reply: Reply, columns: list[ResultColumn], rows: list[tuple], token: int = tk.TOKEN_DONEINPROC
    ) -> None:
        types = [c.type for c in columns]
        reply.write(tk.colmetadata(columns))
        for values in rows:
            reply.write(tk.row(list(values), types))
        reply.done(0, len(rows), token=token, cur_cmd=CMD_SELECT)

    def _generic_proc(self, reply: Reply, call: RpcCall, outputs: list) -> int:
        args = ", ".join(f"{p.name} = {p.name}" + (" OUTPUT" if p.output else "") for p in call.params)
        sql = f"EXEC {call.name} {args}".strip()
        self._trace("exec", sql)
        params = {p.name: p for p in call.params}
        status = 0
        results: list[StatementResult] = []
        ok = self._run(reply, sql, params, in_proc=True, seen=results)
        for result in results:
            if result.return_status is not None:
                status = result.return_status
            for i, p in enumerate(call.params):
                if p.output and p.name in result.output_params:
                    outputs.append((i, p, result.output_params[p.name]))
        return status if ok else (status or 1)

    # --- transaction manager ------------------------------------------------------------
    def transaction_manager(self, payload: bytes) -> None:
        pos, _descriptor = skip_all_headers(payload)
        (request,) = struct.unpack_from("<H", payload, pos)
        self._trace("tm", {TM_BEGIN: "begin", TM_COMMIT: "commit", TM_ROLLBACK: "rollback"}.get(request, str(request)))
        reply = Reply(self.io)
        try:
            self._tm(reply, request, payload, pos + 2)
            reply.done(self._status())
        except SqlServerError as exc:
            self._error(reply, exc, tk.TOKEN_DONE)
        except Exception as exc:  # noqa: BLE001 - report, keep the connection
            self._unexpected(reply, exc, tk.TOKEN_DONE)
        reply.finish()

    def _tm(self, reply: Reply, request: int, payload: bytes, pos: int) -> None:
        if request == TM_BEGIN:
            self._begin(reply)
            return
        if request not in (TM_COMMIT, TM_ROLLBACK):
            raise SqlServerError(8509, f"Transaction manager request {request} is not supported by the double.")
        name_len = payload[pos]
        pos += 1 + 2 * name_len
        begin_again = len(payload) > pos and payload[pos] & 0x01
        descriptor = self.session.transaction_descriptor
        if request == TM_COMMIT:
            self.session.commit()
            reply.write(tk.envchange_bytes(tk.ENV_COMMIT_TRAN, b"", struct.pack("<Q", descriptor)))
        else:
            self.session.rollback()
            reply.write(tk.envchange_bytes(tk.ENV_ROLLBACK_TRAN, b"", struct.pack("<Q", descriptor)))
        if begin_again:
            self._begin(reply)

    def _begin(self, reply: Reply) -> None:
        self.session.begin_transaction()
        descriptor = self.session.transaction_descriptor
        reply.write(tk.envchange_bytes(tk.ENV_BEGIN_TRAN, struct.pack("<Q", descriptor), b""))


def _chunks(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[pa.RecordBatch]:
    """Slices of at most CHUNK_ROWS rows (engines may hand over Tables as well as batches)."""
    for item in batches:
        for batch in item.to_batches() if isinstance(item, pa.Table) else (item,):
            for start in range(0, batch.num_rows, CHUNK_ROWS):
                yield batch.slice(start, CHUNK_ROWS)


__all__ = ["RequestHandler"]
