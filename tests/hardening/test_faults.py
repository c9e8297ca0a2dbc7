"""Backend faults (issue 9.1): drops mid-body, 500 / 503 SlowDown, stalls, short bodies.

The proxy runs with backend=s3 in front of a real moto server reached through FaultHop. Under each
fault the client must get the error S3 itself gives (an XML error with a 5xx status, which S3
clients retry: AWS SDK retry behaviour, "transient errors" = 500, 502, 503, 504 and connection
errors), or a broken transfer when the headers were already sent (never a clean short body); a
retry must succeed, no partial object may become visible, and nothing may leak.
"""

from __future__ import annotations

import gc
import http.client
import os
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError, ResponseStreamingError

from s3proxy import settings as settings_mod

from .harness import Fault, count_resources, error_code, raw_request, s3_client, settle, sigv4_headers

CHUNK = 64 * 1024  # the at-rest format's chunk size (docs/FORMAT.md)
BIG = 6 * CHUNK + 123  # > the store's 256 KiB small-body threshold: the streamed write path, several chunks


def _payload(n: int) -> bytes:
    return os.urandom(n)


def _key() -> str:
    return f"obj-{uuid.uuid4().hex[:8]}"


def _raw_get(url: str, bucket: str, key: str) -> tuple[int, int, bytes, bool]:
    """GET over http.client: (status, declared Content-Length, bytes received, whether the transfer broke)."""
    target = f"/{bucket}/{key}"
    headers = sigv4_headers("GET", url + target)
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        declared = int(resp.getheader("Content-Length", "-1"))
        try:
            data = resp.read()
            broke = False
        except http.client.IncompleteRead as exc:
            data, broke = exc.partial, True
        except ConnectionError:
            data, broke = b"", True
        return resp.status, declared, data, broke
    finally:
        conn.close()


# --- GET: the response has started when the backend fails -------------------------------------------

# (fault kind, bytes of ciphertext the backend delivers before failing, why)
MID_BODY_GET_FAULTS = [
    ("drop_response", 3 * CHUNK + 5, "connection closed after a few chunks: the proxy already sent headers"),
    ("reset_response", 3 * CHUNK + 5, "a TCP reset after a few chunks (the reset may also discard them)"),
    ("short", 3 * CHUNK + 5, "a clean close with a Content-Length that agrees: only the format's length check can tell"),
    ("short", 5 * (CHUNK + 16), "cut exactly at a chunk boundary: every delivered chunk authenticates, the final one is missing"),
]


@pytest.mark.parametrize("kind,after,why", MID_BODY_GET_FAULTS, ids=[f"{k}-{a}" for k, a, _ in MID_BODY_GET_FAULTS])
def test_get_that_fails_mid_body_is_a_broken_transfer_never_a_clean_short_body(faulty, fbucket, hop_clean, kind, after, why):
    thread, ep = faulty
    key, data = _key(), _payload(BIG)
    s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=data)
    fault = hop_clean.inject(Fault(kind, method="GET", path_prefix=f"/{fbucket}/{key}", after=after))

    status, declared, got, broke = _raw_get(ep.url, fbucket, key)

    assert fault.fired == 1
    if status == 500:
        # the failure was seen before the headers went out: aiohttp's client drops the bytes it
        # buffered once a connection breaks, and a backend whose whole response is short (a
        # Content-Length that agrees) no longer matches the envelope's ciphertext size. Either way
        # the client gets S3's error (500 InternalError, which SDKs retry), just as good.
        assert not broke and error_code(got) == "InternalError"
        return
    assert (status, declared) == (200, BIG)
    assert broke and len(got) < BIG, why  # DESIGN.md "Errors": a broken connection, never a clean short body
    assert got == data[: len(got)]  # whatever was released was authentic plaintext
    # the retry a client makes (a fresh GET) gets the whole object
    assert s3_client(ep.url).get_object(Bucket=fbucket, Key=key)["Body"].read() == data


def test_get_short_inside_first_chunk_is_an_s3_error_and_the_sdk_retry_succeeds(faulty, fbucket, hop_clean):
    """Before the headers go out the proxy still can answer properly: 500 InternalError, which SDKs retry."""
    _, ep = faulty
    key, data = _key(), _payload(BIG)
    s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=data)
    hop_clean.inject(Fault("short", method="GET", path_prefix=f"/{fbucket}/{key}", after=1000))
    with pytest.raises(ClientError) as err:
        s3_client(ep.url).get_object(Bucket=fbucket, Key=key)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalError"

    hop_clean.inject(Fault("short", method="GET", path_prefix=f"/{fbucket}/{key}", after=1000))
    assert s3_client(ep.url, attempts=3).get_object(Bucket=fbucket, Key=key)["Body"].read() == data


# --- 5xx from the backend ---------------------------------------------------------------------------

# (method, path suffix, status, code, why)
BACKEND_5XX = [
    ("GET", "", 503, "SlowDown", "GetObject: the backend throttles"),
    ("GET", "", 500, "InternalError", "GetObject: the backend fails"),
    ("HEAD", "", 503, "SlowDown", "HeadObject"),
    ("GET", "?list-type=2", 503, "SlowDown", "ListObjectsV2 (the hop sees the bucket path with a query)"),
]


def _do(s3, method: str, suffix: str, bucket: str, key: str):
    if suffix.startswith("?list-type"):
        return s3.list_objects_v2(Bucket=bucket)["KeyCount"]
    if method == "HEAD":
        return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.mark.parametrize(
    "method,suffix,status,code,why", BACKEND_5XX, ids=[w.split(":")[0] + f"-{s}" for _, _, s, _, w in BACKEND_5XX]
)
def test_backend_5xx_on_a_replayable_request_is_retried_by_the_proxy_then_passed_on(
    faulty, fbucket, hop_clean, method, suffix, status, code, why
):
    _, ep = faulty
    key = _key()
    s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=b"x" * 10)
    prefix = f"/{fbucket}{suffix}" if suffix else f"/{fbucket}/{key}"
    expected = 1 if suffix else 10

    transient = hop_clean.inject(Fault("status", method=method, path_prefix=prefix, count=2, status=status, code=code))
    assert _do(s3_client(ep.url), method, suffix, fbucket, key) == expected  # the proxy's own retries hide it
    assert transient.fired == 2
    hop_clean.clear()

    hop_clean.inject(Fault("status", method=method, path_prefix=prefix, count=1000, status=status, code=code))
    with pytest.raises(ClientError) as err:
        _do(s3_client(ep.url), method, suffix, fbucket, key)
    # the S3 error the backend gave reaches the client with its status (HEAD has no body: status only)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if method != "HEAD":
        assert err.value.response["Error"]["Code"] == code


@pytest.mark.parametrize("status,code", [(503, "SlowDown"), (500, "InternalError")])
def test_put_refused_by_the_backend_leaves_no_object_and_the_sdk_retry_stores_it(faulty, fbucket, hop_clean, status, code):
    """A streamed PUT cannot be replayed by the proxy: it answers the backend's error; the SDK retries."""
    _, ep = faulty
    key, data = _key(), _payload(BIG)
    hop_clean.inject(Fault("status", method="PUT", path_prefix=f"/{fbucket}/{key}", status=status, code=code))
    with pytest.raises(ClientError) as err:
        s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=data)
    assert (err.value.response["ResponseMetadata"]["HTTPStatusCode"], err.value.response["Error"]["Code"]) == (status, code)
    with pytest.raises(ClientError) as missing:
        s3_client(ep.url).head_object(Bucket=fbucket, Key=key)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    fault = hop_clean.inject(Fault("status", method="PUT", path_prefix=f"/{fbucket}/{key}", status=status, code=code))
    s3_client(ep.url, attempts=3).put_object(Bucket=fbucket, Key=key, Body=data)
    assert fault.fired == 1
    assert s3_client(ep.url).get_object(Bucket=fbucket, Key=key)["Body"].read() == data


# --- drops while the proxy writes -------------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, BIG], ids=["small-body", "streamed-body"])
def test_put_dropped_mid_body_by_the_backend_keeps_the_old_version(faulty, fbucket, hop_clean, size):
    _, ep = faulty
    key, old, new = _key(), _payload(size), _payload(size)
    s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=old)
    hop_clean.inject(Fault("drop_request", method="PUT", path_prefix=f"/{fbucket}/{key}", after=size // 2))
    with pytest.raises((ClientError, ConnectionClosedError)) as err:
        s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=new)
    if isinstance(err.value, ClientError):
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
    assert s3_client(ep.url).get_object(Bucket=fbucket, Key=key)["Body"].read() == old  # never half of `new`

    hop_clean.inject(Fault("drop_request", method="PUT", path_prefix=f"/{fbucket}/{key}", after=size // 2))
    s3_client(ep.url, attempts=3).put_object(Bucket=fbucket, Key=key, Body=new)
    assert s3_client(ep.url).get_object(Bucket=fbucket, Key=key)["Body"].read() == new


def test_multipart_part_dropped_mid_body_is_retried_and_the_object_completes(faulty, fbucket, hop_clean):
    _, ep = faulty
    s3 = s3_client(ep.url)
    key = _key()
    part1, part2 = _payload(5 * 1024 * 1024), _payload(BIG)  # S3: every part but the last >= 5 MiB
    upload = s3.create_multipart_upload(Bucket=fbucket, Key=key)["UploadId"]
    hop_clean.inject(Fault("drop_request", method="PUT", path_prefix=f"/{fbucket}/{key}?partNumber=1", after=1 << 20))
    with pytest.raises((ClientError, ConnectionClosedError)):
        s3.upload_part(Bucket=fbucket, Key=key, UploadId=upload, PartNumber=1, Body=part1)
    with pytest.raises(ClientError) as missing:  # the object is not visible before Complete
        s3.head_object(Bucket=fbucket, Key=key)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    hop_clean.inject(Fault("drop_request", method="PUT", path_prefix=f"/{fbucket}/{key}?partNumber=2", after=CHUNK))
    retrying = s3_client(ep.url, attempts=3)
    e1 = retrying.upload_part(Bucket=fbucket, Key=key, UploadId=upload, PartNumber=1, Body=part1)["ETag"]
    e2 = retrying.upload_part(Bucket=fbucket, Key=key, UploadId=upload, PartNumber=2, Body=part2)["ETag"]
    parts = s3.list_parts(Bucket=fbucket, Key=key, UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, len(part2))]
    s3.complete_multipart_upload(Bucket=fbucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert s3.get_object(Bucket=fbucket, Key=key)["Body"].read() == part1 + part2


def test_copy_refused_by_the_backend_leaves_the_target_untouched(faulty, fbucket, hop_clean):
    _, ep = faulty
    s3 = s3_client(ep.url)
    src, dst = _key(), _key()
    s3.put_object(Bucket=fbucket, Key=src, Body=b"source")
    s3.put_object(Bucket=fbucket, Key=dst, Body=b"old target")
    hop_clean.inject(Fault("status", method="PUT", path_prefix=f"/{fbucket}/{dst}", count=1000, status=503, code="SlowDown"))
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=fbucket, Key=dst, CopySource={"Bucket": fbucket, "Key": src})
    assert err.value.response["Error"]["Code"] == "SlowDown"
    hop_clean.clear()
    assert s3.get_object(Bucket=fbucket, Key=dst)["Body"].read() == b"old target"


# --- stalls ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stall", "stall_body"])
def test_client_timing_out_on_a_stalled_backend_can_retry_once_it_recovers(faulty, fbucket, hop_clean, kind):
    _, ep = faulty
    key, data = _key(), _payload(BIG)
    s3_client(ep.url).put_object(Bucket=fbucket, Key=key, Body=data)
    hop_clean.inject(Fault(kind, method="GET", path_prefix=f"/{fbucket}/{key}", after=3 * CHUNK))
    impatient = s3_client(ep.url, read_timeout=1)
    with pytest.raises((ReadTimeoutError, ResponseStreamingError)):
        impatient.get_object(Bucket=fbucket, Key=key)["Body"].read()
    hop_clean.release()
    assert s3_client(ep.url).get_object(Bucket=fbucket, Key=key)["Body"].read() == data


def _backend_timeout_field() -> str | None:
    names = [f.name for f in settings_mod.FIELDS if f.name.startswith("backend") and "timeout" in f.name]
    return names[0] if names else None


def test_a_hung_backend_is_given_up_after_a_configurable_backend_timeout(hop, tmp_path):
    """Issue 9: "limits are settings with safe defaults". A backend that accepts a request and never
    answers must not hold the client (and a proxy task, a socket) for the hard-coded 300 s read
    timeout of backends/s3.py: there must be a backend timeout setting, and when it passes the
    client gets a 5xx S3 error it can retry (S3 answers 503 / 500 when it cannot serve in time)."""
    from tests.e2e.conftest import start_proxy

    name = _backend_timeout_field()
    assert name is not None, "no backend timeout setting in s3proxy/settings.py FIELDS (backends/s3.py hard-codes sock_read=300)"
    thread, ep = start_proxy(tmp_path, "s3", hop.url, **{name: "1"})
    try:
        bucket = f"h-{uuid.uuid4().hex[:16]}"
        s3 = s3_client(ep.url, read_timeout=60)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
        hop.inject(Fault("stall", method="GET", path_prefix=f"/{bucket}/k", count=1000))
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket=bucket, Key="k")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] in (500, 503)
    finally:
        hop.clear()
        thread.stop()


# --- leaks -------------------------------------------------------------------------------------------

ROUNDS = 6


def _one_round_of_every_fault(ep, hop, bucket: str, key: str, data: bytes) -> None:
    for kind, after in (("drop_response", 2 * CHUNK), ("reset_response", 2 * CHUNK), ("short", 2 * CHUNK + 7), ("short", 100)):
        hop.inject(Fault(kind, method="GET", path_prefix=f"/{bucket}/{key}", after=after))
        _raw_get(ep.url, bucket, key)
    hop.inject(Fault("status", method="GET", path_prefix=f"/{bucket}/{key}", count=4, status=503, code="SlowDown"))
    status, _, _ = raw_request(ep.url, "GET", f"/{bucket}/{key}", headers=sigv4_headers("GET", f"{ep.url}/{bucket}/{key}"))
    assert status == 503
    for after in (10, BIG // 2):
        hop.inject(Fault("drop_request", method="PUT", path_prefix=f"/{bucket}/{key}-new", after=after))
        c = s3_client(ep.url)
        try:
            c.put_object(Bucket=bucket, Key=f"{key}-new", Body=data)
        except (ClientError, ConnectionClosedError):
            pass
        c.close()
    hop.inject(Fault("stall_body", method="GET", path_prefix=f"/{bucket}/{key}", after=CHUNK))
    c = s3_client(ep.url, read_timeout=1)
    with pytest.raises((ReadTimeoutError, ResponseStreamingError)):
        c.get_object(Bucket=bucket, Key=key)["Body"].read()
    c.close()
    hop.clear()


def _describe_tasks(loop) -> list[str]:
    import asyncio

    async def tasks() -> list[str]:
        return [
            repr(t.get_coro()) + "".join(f" @{f.f_code.co_name}:{f.f_lineno}" for f in t.get_stack()) for t in asyncio.all_tasks()
        ]

    return asyncio.run_coroutine_threadsafe(tasks(), loop).result(10)


def test_faults_leak_no_task_socket_or_file_descriptor(faulty, fbucket, hop_clean):
    thread, ep = faulty
    key, data = _key(), _payload(BIG)
    warm = s3_client(ep.url)
    warm.put_object(Bucket=fbucket, Key=key, Body=data)
    warm.close()
    _one_round_of_every_fault(ep, hop_clean, fbucket, key, data)  # warm every pool once
    gc.collect()  # idle clients of earlier tests close their keep-alive connections
    before = count_resources(thread.loop)

    for _ in range(ROUNDS):
        _one_round_of_every_fault(ep, hop_clean, fbucket, key, data)
    faults_fired = ROUNDS * 10

    # Pooled keep-alive connections (and their server tasks) may differ by a few; a leak per fault
    # would grow by about faults_fired.
    slack = 6

    def back_to_baseline() -> bool:
        gc.collect()
        now = count_resources(thread.loop)
        return now.tasks <= before.tasks + 2 and now.sockets <= before.sockets + slack and now.fds <= before.fds + slack

    assert settle(back_to_baseline), (before, count_resources(thread.loop), faults_fired, _describe_tasks(thread.loop))
    check = s3_client(ep.url)
    assert check.get_object(Bucket=fbucket, Key=key)["Body"].read() == data
    check.close()
