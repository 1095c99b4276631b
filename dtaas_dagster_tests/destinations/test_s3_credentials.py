"""S3 credentials come from the named variables, against a moto server that checks signatures.

moto accepts any credentials by default, so a test that only writes and reads back
passes whatever keys are sent. Here moto's IAM enforcement is on (``/moto-api/reset-auth``
with 0 free requests): every request must be signed by an IAM access key moto issued,
so using the wrong variables, or the default chain instead of the named ones, fails.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

from dtaas_dagster.destinations.commit import write_partition
from dtaas_dagster.destinations.files import WriteOptions, new_load_id
from dtaas_dagster.destinations.location import open_location
from dtaas_dagster_tests.destinations.s3_samples import numbered_table, stream_of
from dtaas_dagster_tests.s3_fixtures import REGION, MotoS3

KEY_ENV, SECRET_ENV = "DTAAS_TEST_AUTH_KEY_ID", "DTAAS_TEST_AUTH_SECRET"


@dataclass(frozen=True)
class IamKey:
    key_id: str
    secret: str


def _set_free_requests(endpoint: str, count: str) -> str:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.loads(reply.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])


@pytest.fixture()
def enforced_auth(moto_s3: MotoS3, s3_bucket: str) -> Iterator[IamKey]:
    """An IAM user allowed s3:* with a fresh access key; signatures are checked until the test ends."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_s3.endpoint_url,
        region_name=REGION,
        aws_access_key_id="fixture-admin",
        aws_secret_access_key="fixture-admin-secret",
    )
    user = f"loader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    previous = _set_free_requests(moto_s3.endpoint_url, "0")
    try:
        yield IamKey(key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        _set_free_requests(moto_s3.endpoint_url, previous)


def _listing(moto_s3: MotoS3, bucket: str, key: IamKey) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint_url,
        region_name=REGION,
        aws_access_key_id=key.key_id,
        aws_secret_access_key=key.secret,
    )
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _write(moto_s3: MotoS3, bucket: str, *, named: bool, rows: int = 10) -> None:
    names = {"access_key_id_env": KEY_ENV, "secret_access_key_env": SECRET_ENV} if named else {}
    location = open_location(f"s3://{bucket}/lake", endpoint_url=moto_s3.endpoint_url, **names)
    write_partition(
        location.fs,
        location.path("t/p1"),
        stream_of(numbered_table(rows)),
        WriteOptions(),
        load_id=new_load_id("run1"),
        run_id="run1",
    )


def test_the_named_variables_sign_every_request_and_win_over_the_default_chain(
    moto_s3: MotoS3, s3_bucket: str, enforced_auth: IamKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, enforced_auth.key_id)
    monkeypatch.setenv(SECRET_ENV, enforced_auth.secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGDEFAULTCHAIN")  # the default chain holds other keys
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-default-secret")

    _write(moto_s3, s3_bucket, named=True)
    first = _listing(moto_s3, s3_bucket, enforced_auth)
    _write(moto_s3, s3_bucket, named=True, rows=20)  # a re-run deletes the old file through boto3: signed too

    second = _listing(moto_s3, s3_bucket, enforced_auth)
    assert len(first) == len(second) == 2 and "lake/t/p1/_manifest.json" in second
    assert not set(first) - {"lake/t/p1/_manifest.json"} & set(second)


def test_a_wrong_secret_in_the_named_variable_is_refused_and_not_shown(
    moto_s3: MotoS3, s3_bucket: str, enforced_auth: IamKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, enforced_auth.key_id)
    monkeypatch.setenv(SECRET_ENV, "not-the-secret-6d1e")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", enforced_auth.key_id)  # the right keys, but not the named ones
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", enforced_auth.secret)

    with pytest.raises(OSError, match="SIGNATURE_DOES_NOT_MATCH") as refused:
        _write(moto_s3, s3_bucket, named=True)
    for secret in ("not-the-secret-6d1e", enforced_auth.secret):
        assert secret not in str(refused.value) and secret not in repr(refused.value)
    assert _listing(moto_s3, s3_bucket, enforced_auth) == []


def test_without_named_variables_the_default_chain_signs(
    moto_s3: MotoS3, s3_bucket: str, enforced_auth: IamKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", enforced_auth.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", enforced_auth.secret)
    _write(moto_s3, s3_bucket, named=False)
    assert "lake/t/p1/_manifest.json" in _listing(moto_s3, s3_bucket, enforced_auth)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-default-secret")
    with pytest.raises(OSError, match="SIGNATURE_DOES_NOT_MATCH"):
        _write(moto_s3, s3_bucket, named=False)
