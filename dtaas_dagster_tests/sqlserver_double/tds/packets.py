"""TDS packets and messages over a byte transport (plain socket or TLS).

A *message* is one or more *packets* of at most the negotiated packet size;
the last has status EOM. Reads take exactly one packet at a time (header, then
exactly ``length - 8`` bytes) and never read ahead into the socket beyond what
a packet needs except into the transport's own buffer: this matters for TLS,
where the client's LOGIN7 may follow its last handshake record immediately.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct

HEADER = struct.Struct(">BBHHBB")
STATUS_EOM = 0x01
STATUS_RESET = 0x08 | 0x10  # RESETCONNECTION / RESETCONNECTIONSKIPTRAN

SQL_BATCH, RPC, REPLY, ATTENTION, BULK, TRANSACTION_MANAGER, LOGIN7, PRELOGIN = 1, 3, 4, 6, 7, 0x0E, 0x10, 0x12


class ConnectionClosed(Exception):
    """The client closed the connection (or it was dropped on purpose)."""


class RawTransport:
    """A socket with a receive buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc
        if not chunk:
            raise ConnectionClosed("client closed the connection")
        self.buffer += chunk

    def recv_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConnectionClosed(str(exc)) from exc

    def has_pending(self) -> bool:
        """True when the client has sent something we have not read (e.g. an ATTENTION)."""
        if self.buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)


class TlsTransport:
    """TLS on the raw stream after the PRELOGIN-wrapped handshake (``ssl.SSLObject`` over memory BIOs)."""

    def __init__(self, raw: RawTransport, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.raw, self.tls, self.incoming, self.outgoing = raw, tls, incoming, outgoing
        self.buffer = bytearray()
        if raw.buffer:  # bytes that arrived behind the last handshake record are TLS records
            incoming.write(bytes(raw.buffer))
            raw.buffer.clear()

    def _fill(self) -> None:
        while True:
            try:
                self.buffer += self.tls.read(65536)
                return
            except ssl.SSLWantReadError:
                self._flush()
                raw = self.raw
                raw._fill()
                self.incoming.write(bytes(raw.buffer))
                raw.buffer.clear()
            except ssl.SSLError as exc:
                raise ConnectionClosed(f"TLS error: {exc}") from exc

    def recv_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.raw.send(pending)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def has_pending(self) -> bool:
        return bool(self.buffer) or self.tls.pending() > 0 or self.raw.has_pending()


Transport = RawTransport | TlsTransport


class PacketIO:
    """Reads whole messages and writes messages split into packets of ``packet_size``."""

    def __init__(self, transport: Transport, packet_size: int = 4096) -> None:
        self.transport = transport
        self.packet_size = packet_size

    def read_packet(self) -> tuple[int, int, bytes]:
        ptype, status, length, _spid, _pid, _win = HEADER.unpack(self.transport.recv_exact(8))
        if length < 8:
            raise ConnectionClosed(f"malformed TDS packet header (length {length})")
        return ptype, status, self.transport.recv_exact(length - 8)

    def read_message(self) -> tuple[int, int, bytes]:
        """(packet type, status of the first packet, payload of all packets up to EOM)."""
        ptype, status, payload = self.read_packet()
        first_status = status
        parts = [payload]
        while not status & STATUS_EOM:
            next_type, status, payload = self.read_packet()
            if next_type == ATTENTION:  # a cancel in the middle of a request: the request is dropped
                return ATTENTION, status, b""
            parts.append(payload)
        return ptype, first_status, b"".join(parts)

    def frame(self, ptype: int, data: bytes | memoryview, *, last: bool, packet_id: int = 1) -> bytes:
        """``data`` as packets; the final one carries EOM only when ``last``."""
        size = self.packet_size - 8
        data = memoryview(data)
        out: list[bytes | memoryview] = []
        count = max(1, -(-len(data) // size))
        for i in range(count):
            chunk = data[i * size : (i + 1) * size]
            status = STATUS_EOM if last and i == count - 1 else 0
            out.append(HEADER.pack(ptype, status, len(chunk) + 8, 0, (packet_id + i) & 0xFF, 0))
            out.append(chunk)
        return b"".join(out)

    def write_message(self, ptype: int, data: bytes) -> None:
        self.transport.send(self.frame(ptype, data, last=True))


class MessageWriter:
    """Streams one reply message: full packets go out as soon as they fill up."""

    def __init__(self, io: PacketIO, ptype: int = REPLY) -> None:
        self.io = io
        self.ptype = ptype
        self.pending = bytearray()
        self.packet_id = 1

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data``; send every packet that is full and known not to be the last one.

        ``pending`` never holds more than one packet's worth, and at least one byte is
        always kept back so that the final packet (with EOM) is never empty.
        """
        size = self.io.packet_size - 8
        view = memoryview(data)
        if self.pending:
            room = size - len(self.pending)
            if len(view) <= room:
                self.pending += view
                return
            self.pending += view[:room]
            self._send(bytes(self.pending), last=False)
            self.pending.clear()
            view = view[room:]
        if len(view) > size:  # large encoded rows: framed straight from the buffer
            full = ((len(view) - 1) // size) * size
            self._send(view[:full], last=False)
            view = view[full:]
        self.pending += view

    def _send(self, data: bytes | memoryview, *, last: bool) -> None:
        packets = -(-len(data) // (self.io.packet_size - 8)) or 1
        self.io.transport.send(self.io.frame(self.ptype, data, last=last, packet_id=self.packet_id))
        self.packet_id = (self.packet_id + packets) & 0xFF

    def finish(self) -> None:
        self._send(bytes(self.pending), last=True)
        self.pending.clear()
