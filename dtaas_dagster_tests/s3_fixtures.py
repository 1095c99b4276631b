"""S3 stand-in for the tests (imported by conftest.py): moto's S3 server in a thread on 127.0.0.1.

``moto_s3`` (session) starts ``ThreadedMotoServer`` on a free port and stops it
at the end; it exposes ``endpoint_url`` and a boto3 ``client``. ``s3_bucket``
(function) creates a fresh bucket per test and yields its name. ``s3_credentials``
puts throwaway keys into environment variables and yields their NAMES and values,
the way a user configures ``access_key_id_env`` / ``secret_access_key_env``.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    client: Any


@dataclass(frozen=True)
class S3Credentials:
    key_id_env: str
    secret_env: str
    key_id: str
    secret: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="fixture-admin",
            aws_secret_access_key="fixture-admin-secret",
        )
        yield MotoS3(endpoint, client)
    finally:
        server.stop()


@pytest.fixture()
def s3_bucket(moto_s3: MotoS3) -> str:
    name = f"dtaas-test-{uuid.uuid4().hex[:12]}"
    moto_s3.client.create_bucket(Bucket=name)
    return name


@pytest.fixture()
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> S3Credentials:
    creds = S3Credentials(
        key_id_env="DTAAS_TEST_S3_KEY_ID",
        secret_env="DTAAS_TEST_S3_SECRET",
        key_id="AKIADTAASTESTKEY0001",
        secret="dtaas-secret-value-7f3c9a",
    )
    monkeypatch.setenv(creds.key_id_env, creds.key_id)
    monkeypatch.setenv(creds.secret_env, creds.secret)
    return creds
