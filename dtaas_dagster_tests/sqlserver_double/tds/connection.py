"""One client connection: PRELOGIN, optional TLS, LOGIN7, then the request loop."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine_api import Engine, EngineSession, SqlServerError
from . import tokens as tk
from .login7 import Login, parse_login7
from .packets import (
    ATTENTION,
    LOGIN7,
    PRELOGIN,
    REPLY,
    RPC,
    SQL_BATCH,
    TRANSACTION_MANAGER,
    ConnectionClosed,
    PacketIO,
    RawTransport,
)
from .prelogin import ENCRYPT_NOT_SUP, ENCRYPT_OFF, OPT_ENCRYPTION, build_prelogin, choose_encryption, parse_prelogin
from .requests import DropConnection, RequestHandler
from .tls import handshake
from .typeinfo import COLLATION

if TYPE_CHECKING:
    from ..faults import Faults

log = logging.getLogger(__name__)
DEFAULT_PACKET_SIZE = 4096


@dataclass
class ConnectionSettings:
    engine: Engine
    faults: Faults
    tls_context: Callable[[], ssl.SSLContext]
    login_encryption: bool = True
    max_packet_size: int = 32767
    traffic: Callable[[str, str, str], None] | None = None  # (client app, kind, text)


class Connection:
    def __init__(self, sock: socket.socket, settings: ConnectionSettings, spid: int) -> None:
        self.sock = sock
        self.settings = settings
        self.spid = spid
        self.io = PacketIO(RawTransport(sock), DEFAULT_PACKET_SIZE)
        self.session: EngineSession | None = None

    def serve(self) -> None:
        try:
            login = self._handshake()
            handler = self._login(login)
            if handler is not None:
                self._loop(handler)
        except (ConnectionClosed, DropConnection) as exc:
            log.debug("connection %d closed: %s", self.spid, exc)
        except Exception:  # noqa: BLE001 - log, never die silently
            log.exception("SQL Server double: connection %d failed", self.spid)
        finally:
            self.close()

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001
                log.exception("engine session close failed")
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- PRELOGIN / TLS / LOGIN7 ------------------------------------------------
    def _handshake(self) -> Login:
        ptype, _status, payload = self.io.read_message()
        if ptype != PRELOGIN:
            raise ConnectionClosed(f"expected PRELOGIN, got packet type {ptype:#x}")
        options = parse_prelogin(payload)
        client_enc = options.get(OPT_ENCRYPTION, bytes([ENCRYPT_NOT_SUP]))[0] & 0x0F
        enc = choose_encryption(client_enc, login_encryption=self.settings.login_encryption)
        self.io.write_message(REPLY, build_prelogin(enc, fedauth_echo=False))
        raw = self.io.transport
        if enc != ENCRYPT_NOT_SUP:
            self.io.transport = handshake(self.io, self.settings.tls_context())
        ptype, _status, payload = self.io.read_message()
        if ptype != LOGIN7:
            raise ConnectionClosed(f"expected LOGIN7, got packet type {ptype:#x}")
        if enc == ENCRYPT_OFF:  # login-only encryption: back to the plain stream
            self.io.transport = raw
        login = parse_login7(payload)
        if self.settings.traffic is not None:
            mode = {ENCRYPT_NOT_SUP: "none", ENCRYPT_OFF: "login-only"}.get(enc, "full")
            self.settings.traffic(login.app, "encryption", mode)
        return login

    def _login(self, login: Login) -> RequestHandler | None:
        engine, faults = self.settings.engine, self.settings.faults
        refusal = faults.login_refusal()
        if refusal == "close":
            raise ConnectionClosed("fault: login refused by closing the socket")
        if refusal == "error" or not engine.authenticate(login.user, login.password):
            self._login_error(SqlServerError(18456, f"Login failed for user '{login.user}'.", severity=14))
            return None
        try:
            self.session = engine.open_session(login.user, login.database or None)
        except SqlServerError as exc:
            self._login_error(exc)
            return None
        size = login.packet_size or DEFAULT_PACKET_SIZE
        size = max(512, min(size, self.settings.max_packet_size))
        self.io.write_message(REPLY, self._login_tokens(login, size))
        self.io.packet_size = size
        if self.settings.traffic is not None:
            self.settings.traffic(login.app, "packet_size", str(size))
        app = login.app
        traffic = self.settings.traffic
        return RequestHandler(
            self.io,
            self.session,
            faults,
            engine.server_name,
            self.spid,
            log_traffic=(lambda kind, text: traffic(app, kind, text)) if traffic else None,
        )

    def _login_error(self, exc: SqlServerError) -> None:
        token = tk.message(
            error=True,
            number=exc.number,
            state=exc.state,
            severity=exc.severity,
            text=exc.message,
            server=self.settings.engine.server_name,
        )
        self.io.write_message(REPLY, token + tk.done(tk.DONE_ERROR))

    def _login_tokens(self, login: Login, packet_size: int) -> bytes:
        assert self.session is not None
        server = self.settings.engine.server_name
        database = self.session.database
        parts = [
            tk.envchange_text(tk.ENV_DATABASE, database, "master"),
            tk.message(
                error=False,
                number=5701,
                state=2,
                severity=0,
                server=server,
                text=f"Changed database context to '{database}'.",
            ),
            tk.envchange_bytes(tk.ENV_COLLATION, COLLATION, b""),
            tk.envchange_text(tk.ENV_LANGUAGE, "us_english", ""),
            tk.message(
                error=False,
                number=5703,
                state=1,
                severity=0,
                server=server,
                text="Changed language setting to us_english.",
            ),
            tk.loginack(),
            tk.envchange_text(tk.ENV_PACKETSIZE, str(packet_size), str(DEFAULT_PACKET_SIZE)),
        ]
        if login.requested_features:
            parts.append(tk.feature_ext_ack())
        parts.append(tk.done(0))
        return b"".join(parts)

    def _cancelled_during_latency(self) -> bool:
        """Sleep the injected latency; True when the client cancelled (ATTENTION) meanwhile."""
        deadline = time.monotonic() + self.settings.faults.latency()
        while (left := deadline - time.monotonic()) > 0:
            if self.io.transport.has_pending():
                ptype, _status, _payload = self.io.read_packet()
                if ptype == ATTENTION:
                    return True
                raise ConnectionClosed(f"client sent packet type {ptype:#x} before the previous reply")
            time.sleep(min(left, 0.05))
        return False

    # --- requests -----------------------------------------------------------------
    def _loop(self, handler: RequestHandler) -> None:
        while True:
            ptype, _status, payload = self.io.read_message()
            if ptype != ATTENTION and self._cancelled_during_latency():
                handler.attention()
                continue
            if ptype == SQL_BATCH:
                handler.sql_batch(payload)
            elif ptype == RPC:
                handler.rpc(payload)
            elif ptype == TRANSACTION_MANAGER:
                handler.transaction_manager(payload)
            elif ptype == ATTENTION:
                handler.attention()
            else:
                handler.unsupported(ptype)
