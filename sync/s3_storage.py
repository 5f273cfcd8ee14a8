"""The storage protocol on an S3 bucket (or a prefix in it)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NoReturn, cast

from botocore.exceptions import BotoCoreError, ClientError

from sync.storage import (
    COPY_CHUNK,
    DEFAULT_S3_CONNECTIONS,
    SPOOL_IN_MEMORY,
    ChecksumMismatch,
    Inspector,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Readable,
    StorageError,
    StoredStream,
    UnstorableKey,
    check_conditions,
    copy_hashing,
    mismatch,
    validate_key,
)

S3_MAX_ATTEMPTS = 5  # tries in all; "standard" mode retries 5xx, SlowDown, throttling and dropped connections
BUCKET_NAME = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
IPV4_LIKE = re.compile(r"\A\d+\.\d+\.\d+\.\d+\Z")
BOTO_ERRORS = (ClientError, BotoCoreError)


class S3Storage:
    """An S3 bucket (or a prefix in it): one request per verb, sha256 checked by S3 itself on every upload."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_connections: int = DEFAULT_S3_CONNECTIONS,
        client: Any = None,
    ):
        dest = f"s3://{bucket}/{prefix}".rstrip("/")
        if not bucket:
            raise ValueError(f"invalid S3 destination {dest!r}: no bucket name (expected s3://bucket[/prefix])")
        if not BUCKET_NAME.match(bucket) or ".." in bucket or IPV4_LIKE.match(bucket):
            raise ValueError(
                f"invalid S3 destination {dest!r}: bucket name {bucket!r} is not valid "
                "(3-63 characters: lower-case letters, digits, '.' and '-')"
            )
        if prefix:
            try:
                validate_key(prefix)
            except StorageError as error:
                raise ValueError(f"invalid S3 destination {dest!r}: prefix {prefix!r} is not a safe path") from error
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.dest = dest
        self.client = client or _s3_client(endpoint_url, max_connections)

    def describe(self) -> str:
        return self.dest

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, key: str, action: str, error: Exception) -> NoReturn:
        """Raise the StorageError (or subclass) that `error` from botocore means, naming the key and the AWS code."""
        where = f"{self.dest}/{key}"
        if not isinstance(error, ClientError):
            raise StorageError(f"{where}: {action} failed: {error}") from error
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.response.get("Error", {}).get("Message", "")
        text = f"{where}: {action} failed: {code or 'error'} (HTTP {status}){': ' + message if message else ''}"
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise PreconditionFailed(text) from error
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            raise ChecksumMismatch(text) from error
        if code == "KeyTooLongError":
            raise UnstorableKey(text) from error
        raise StorageError(text) from error

    @staticmethod
    def _absent(error: Exception) -> bool:
        if not isinstance(error, ClientError):
            return False
        code = error.response.get("Error", {}).get("Code")
        return (
            code in ("NoSuchKey", "404", "NotFound")
            and error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
        )

    def put_file(
        self,
        key: str,
        body: Readable,
        *,
        sha256: str,
        size: int | None,
        content_type: str,
        cache_control: str,
        inspect: Inspector | None = None,
        if_none_match: bool = False,
    ) -> int:
        """`inspect` reads the spool (memory, or a temp file past SPOOL_IN_MEMORY) before the PutObject;
        `if_none_match` sends it with `If-None-Match: *`."""
        full_key = self._key(key)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            actual, received = copy_hashing(key, body, spool.write, size)
            if error := mismatch(key, sha256, actual, size, received):
                raise error
            if inspect is not None:
                spool.seek(0)
                inspect(cast(BinaryIO, spool))
            spool.seek(0)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Body=cast(BinaryIO, spool),
                    ContentLength=received,
                    ContentType=content_type,
                    CacheControl=cache_control,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(actual)).decode(),
                    **({"IfNoneMatch": "*"} if if_none_match else {}),
                )
            except BOTO_ERRORS as error:
                self._fail(key, "PUT", error)
        return received

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        check_conditions(key, if_match, if_none_match)
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                CacheControl=cache_control,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                **conditions,
            )
        except BOTO_ERRORS as error:
            if if_match is not None and self._absent(error):
                raise PreconditionFailed(f"{self.dest}/{key}: absent, expected etag {if_match}") from error
            self._fail(key, "PUT", error)
        return response["ETag"]

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"]
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "GET", error)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "HEAD", error)
        return ObjectInfo(key, response["ContentLength"], response["ETag"], response["LastModified"].timestamp())

    def open(self, key: str) -> StoredStream:
        """The etag is GetObject's: the version this stream reads."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except BOTO_ERRORS as error:
            if self._absent(error):
                raise ObjectNotFound(f"{self.dest}/{key}: no such object") from error
            self._fail(key, "GET", error)
        raw = _S3Stream(response["Body"], lambda error: self._fail(key, "GET", error))
        return StoredStream(raw, response["ETag"], buffer_size=COPY_CHUNK)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        try:
            if if_match is None:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            else:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=if_match)
        except BOTO_ERRORS as error:
            if if_match is not None and self._absent(error):
                raise PreconditionFailed(f"{self.dest}/{key}: absent, expected etag {if_match}") from error
            self._fail(key, "DELETE", error)

    def stored_sha256(self, key: str) -> tuple[int, str | None] | None:
        """HeadObject with ChecksumMode=ENABLED: the full-object SHA256 S3 checked at the PUT (put_file and put_bytes
        name it). A multipart upload's checksum of part checksums ("…-N", COMPOSITE) is no file digest: None."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "HEAD", error)
        stored = response.get("ChecksumSHA256")
        if not stored or "-" in stored or response.get("ChecksumType") == "COMPOSITE":
            return response["ContentLength"], None
        try:
            return response["ContentLength"], base64.b64decode(stored, validate=True).hex()
        except ValueError:
            return response["ContentLength"], None

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        after = {"StartAfter": self.prefix + start_after} if start_after else {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, **after
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        item["Key"][len(self.prefix) :], item["Size"], item["ETag"], item["LastModified"].timestamp()
                    )
        except BOTO_ERRORS as error:
            self._fail(prefix, "LIST", error)


class _S3Stream(io.RawIOBase):
    """A GetObject body as a raw stream whose read errors become StorageErrors."""

    def __init__(self, body: Any, fail: Callable[[Exception], NoReturn]):
        self._body = body
        self._fail = fail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._body.read(len(buffer))
        except BOTO_ERRORS as error:
            self._fail(error)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


def _s3_client(endpoint_url: str | None, max_connections: int) -> Any:
    import boto3.session  # noqa: PLC0415 - boto3 loads only for S3 destinations
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
        max_pool_connections=max(max_connections, 1),
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="pypi-cdn",
        parameter_validation=False,  # the calls are ours and tested; validating each costs CPU per request
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
