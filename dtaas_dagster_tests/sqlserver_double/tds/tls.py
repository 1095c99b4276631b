"""TLS for TDS: a self-signed certificate and the PRELOGIN-wrapped handshake.

During the handshake every TLS record travels inside TDS PRELOGIN (0x12)
packets; after it, TLS records go on the raw stream. The rules that keep the
handshake reliable (see the package README, "Encryption"):

* read whole TDS *messages* (all packets up to EOM) and feed their payloads to
  OpenSSL before answering, so a client flight split over several packets is
  consumed completely before the server writes its response;
* never read past the last packet of a message (the client may send its TLS
  encrypted LOGIN7 right behind its Finished message; that goes to the
  post-handshake transport, not into a PRELOGIN payload);
* send the server flight as one message split into packets of at most the
  pre-login packet size (4096);
* no TLS 1.3 session tickets: OpenSSL writes them after the handshake has
  completed, and they would arrive unwrapped while the client is still reading
  PRELOGIN packets (num_tickets = 0).
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from pathlib import Path

from .packets import PRELOGIN, ConnectionClosed, PacketIO, RawTransport, TlsTransport


def self_signed_context(common_name: str = "localhost") -> ssl.SSLContext:
    """A server SSLContext with a fresh RSA key and self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # TDS 7.x carries TLS 1.2 (SQL Server does the same); Driver 18 stalls when
    # the PRELOGIN-wrapped handshake negotiates TLS 1.3.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.num_tickets = 0
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


def handshake(io: PacketIO, ctx: ssl.SSLContext) -> TlsTransport:
    """Run the server side of the PRELOGIN-wrapped TLS handshake; return the TLS transport."""
    raw = io.transport
    assert isinstance(raw, RawTransport)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        ptype, _status, payload = io.read_message()
        if ptype != PRELOGIN:
            raise ConnectionClosed(f"expected a PRELOGIN packet carrying TLS, got type {ptype:#x}")
        incoming.write(payload)
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError as exc:
            raise ConnectionClosed(f"TLS handshake failed: {exc}") from exc
        flight = outgoing.read()
        if flight:
            io.write_message(PRELOGIN, flight)
        if done:
            return TlsTransport(raw, tls, incoming, outgoing)
