"""DoubleServer: the SQL Server double's TCP listener (TDS 7.4 on 127.0.0.1).

One thread accepts connections; each connection gets its own thread running
``tds.connection.Connection``. ``stop()`` closes the listener and every open
connection and joins the threads. The TLS certificate is generated lazily, on
the first client that asks for encryption.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from types import TracebackType

from .engine_api import Engine
from .faults import Faults

log = logging.getLogger(__name__)


class DoubleServer:
    """A TDS server in front of an :class:`~.engine_api.Engine`.

    A client that offers ENCRYPT_OFF gets OFF back, as from SQL Server (which
    always has a certificate): TLS for the LOGIN7 packet only, plain TCP after
    it. Clients that stop when the answer is NOT_SUP (tiberius, so connectorx
    with ``encrypt=false``, waits for a TLS handshake that never comes) work
    this way. ``login_encryption=False`` answers NOT_SUP instead (no TLS at all).
    """

    def __init__(
        self,
        engine: Engine,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        login_encryption: bool = True,
        max_packet_size: int = 32767,
    ) -> None:
        self.engine = engine
        self.host = host
        self._requested_port = port
        self.faults = Faults()
        self.login_encryption = login_encryption
        self.max_packet_size = max_packet_size
        self.traffic: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[int, tuple[object, threading.Thread]] = {}
        self._next_spid = 51
        self._tls: ssl.SSLContext | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("DoubleServer is not started; call start() first")
        return self._listener.getsockname()[1]

    def start(self) -> DoubleServer:
        listener = socket.create_server((self.host, self._requested_port), backlog=128)
        listener.settimeout(0.2)  # accept() wakes up regularly to notice stop()
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="double-accept", daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=10)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections.values())
        for conn, _thread in connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
            except OSError:
                pass
        for _conn, thread in connections:
            thread.join(timeout=10)
        self._listener = None

    def __enter__(self) -> DoubleServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def tls_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                from .tds.tls import self_signed_context

                self._tls = self_signed_context()
            return self._tls

    def _record(self, app: str, kind: str, text: str) -> None:
        with self._lock:
            self.traffic.add((app, kind, text))

    def _accept_loop(self) -> None:
        from .tds.connection import Connection, ConnectionSettings

        settings = ConnectionSettings(
            self.engine, self.faults, self.tls_context, self.login_encryption, self.max_packet_size, self._record
        )
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                spid = self._next_spid
                self._next_spid += 1
            conn = Connection(sock, settings, spid)
            thread = threading.Thread(target=self._serve, args=(spid, conn), name=f"double-spid-{spid}", daemon=True)
            with self._lock:
                self._connections[spid] = (conn, thread)
            thread.start()

    def _serve(self, spid: int, conn: object) -> None:
        try:
            conn.serve()  # type: ignore[attr-defined]
        finally:
            with self._lock:
                self._connections.pop(spid, None)
