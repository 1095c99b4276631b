"""Where partitions live: a filesystem (S3 or local) plus a base path, and the path template.

Credentials are read from the NAMED environment variables at call time and
handed to pyarrow / boto3 only; they are never logged or put in errors.
Template values are escaped one-to-one (Hive-style ``%XX``), so two distinct
partition keys never share a directory and no value can add or escape one.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

# --------------------------------------------------------------------------- filesystem


@dataclass(frozen=True)
class Location:
    """Where partitions live: an Arrow filesystem plus the base path inside it."""

    fs: pafs.FileSystem
    base: str  # path inside ``fs``: "bucket/prefix" on S3, an absolute path locally
    scheme: str  # "s3" or "file"

    def path(self, relative: str) -> str:
        return f"{self.base.rstrip('/')}/{relative}" if relative else self.base

    def url(self, path: str) -> str:
        """A URL a person can paste: ``s3://bucket/key`` or ``file:///abs/path``."""
        return f"s3://{path}" if self.scheme == "s3" else f"file://{path}"

    def delete(self, path: str) -> None:
        """Delete one object/file (on S3 without leaving a directory marker)."""
        self.fs.delete_file(path)

    def abort_dead_uploads(self, directory: str, is_dead_load: Callable[[str], bool]) -> list[str]:
        """Abort incomplete S3 multipart uploads under ``directory`` whose load is dead.

        A load killed mid-file leaves one (S3 keeps and bills its parts until it is
        aborted). The load is read from the key (``part-<load_id>-<nnnnn>...``). Local
        directories have none.
        """
        if not isinstance(self.fs, _S3FileSystem):
            return []
        return self.fs.abort_uploads(directory, is_dead_load)


def _env_value(env_name: str | None, field_name: str) -> str | None:
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ValueError(
            f"{field_name} names the environment variable {env_name!r}, which is not set; "
            f"export {env_name} or clear {field_name} to use the default AWS credential chain"
        )
    return value


class _S3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem, except that deleting an object leaves no directory marker.

    pyarrow's ``delete_file`` writes an empty ``dir/`` object after every delete
    (measured against moto: deleting ``a/b/y`` next to ``a/b/x`` adds ``a/b/``), so
    cleaning up a failed attempt would still change the bucket. Deletes go
    through boto3 with the same endpoint and credentials instead.
    """

    def __init__(self, *, boto_options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._boto_options = boto_options
        self._client: Any = None

    def _boto(self) -> Any:
        import boto3

        if self._client is None:
            self._client = boto3.client("s3", **self._boto_options)
        return self._client

    def delete_file(self, path: str) -> None:
        bucket, _, key = path.partition("/")
        self._boto().delete_object(Bucket=bucket, Key=key)

    def abort_uploads(self, directory: str, is_dead_load: Callable[[str], bool]) -> list[str]:
        from dtaas_dagster.destinations.files import load_id_of

        bucket, _, prefix = directory.partition("/")
        aborted = []
        pages = self._boto().get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix + "/")
        for page in pages:
            for upload in page.get("Uploads", []):
                name = upload["Key"].rsplit("/", 1)[-1]
                load = load_id_of(name)
                if load is not None and is_dead_load(load):
                    self._boto().abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted.append(f"{name} (incomplete upload)")
        return aborted


def open_location(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id_env: str | None = None,
    secret_access_key_env: str | None = None,
    session_token_env: str | None = None,
) -> Location:
    """Open ``s3://bucket[/prefix]``, ``file:///abs`` or ``file://relative`` (against the cwd).

    S3 credentials are read from the NAMED environment variables now, at call
    time, and handed to pyarrow only; they are never logged or put in errors.
    Without them pyarrow uses the default AWS credential chain.
    """
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"S3 url {url!r} has no bucket; write it as s3://bucket[/prefix]")
        key_id = _env_value(access_key_id_env, "access_key_id_env")
        secret = _env_value(secret_access_key_env, "secret_access_key_env")
        if (key_id is None) != (secret is None):
            raise ValueError("set both access_key_id_env and secret_access_key_env, or neither")
        kwargs: dict[str, Any] = {"region": region or "us-east-1"}
        boto: dict[str, Any] = {"region_name": region or "us-east-1"}
        if key_id is not None:
            session_token = _env_value(session_token_env, "session_token_env")
            kwargs.update(access_key=key_id, secret_key=secret, session_token=session_token)
            boto.update(aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=session_token)
        if endpoint_url:
            endpoint = urlparse(endpoint_url)
            if not endpoint.scheme or not endpoint.netloc:
                raise ValueError(f"endpoint_url {endpoint_url!r} must look like http://host:port")
            kwargs.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
            boto["endpoint_url"] = endpoint_url
        base = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
        return Location(_S3FileSystem(boto_options=boto, **kwargs), base, "s3")
    if parsed.scheme == "file":
        raw = url[len("file://") :]
        base = os.path.abspath(raw or ".")
        return Location(pafs.LocalFileSystem(), base.rstrip("/") or "/", "file")
    raise ValueError(f"unsupported destination url {url!r}; use s3://bucket[/prefix] or file:///path")


# --------------------------------------------------------------------------- path template

_UNSAFE = re.compile(r"[^\w.=-]")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group(0).encode("utf-8"))


def sanitize_path_value(value: str) -> str:
    """Make one template value safe as (part of) a single path segment, reversibly.

    Hive-style escaping: every character other than letters, digits (any
    script) and ``_ . = -`` becomes ``%XX`` per UTF-8 byte, so ``/``, ``\\``,
    ``:``, spaces and ``%`` itself cannot add or escape directories; a value made
    only of dots (``.``, ``..``) is escaped entirely. The mapping is one-to-one,
    so two different partition keys never share a directory. An empty value is
    an error (it would leave an empty path segment).
    """
    text = str(value)
    if text == "":
        raise ValueError("an empty value cannot be a path segment")
    if text.strip(".") == "":
        return "%2E" * len(text)
    return _UNSAFE.sub(_percent, text)


class _SanitizedVariables(Mapping[str, str]):
    """Template variables, escaped only when the template uses them."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._variables = variables

    def __getitem__(self, name: str) -> str:
        try:
            return sanitize_path_value(self._variables[name])
        except ValueError as e:
            raise ValueError(
                f"path template variable ${name} is empty; give it a value or drop it from the template"
            ) from e

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def render_partition_dir(template: str, variables: Mapping[str, str]) -> str:
    """Render the path template with escaped variables into a relative directory."""
    try:
        rendered = string.Template(template).substitute(_SanitizedVariables(variables))
    except KeyError as e:
        raise ValueError(
            f"path template {template!r} uses ${e.args[0]}, which is not a variable; "
            f"known variables: {', '.join(sorted(variables))}"
        ) from e
    except ValueError as e:
        if "path template" in str(e):
            raise
        raise ValueError(f"path template {template!r} is malformed ({e}); write $name or ${{name}}") from e
    segments = [s for s in rendered.split("/") if s not in ("", ".")]
    if not segments or ".." in segments:
        raise ValueError(f"path template {template!r} renders to {rendered!r}, not a relative directory")
    return "/".join(segments)
