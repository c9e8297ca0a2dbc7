"""Issue 14: an anonymous request costs O(1) and leaves no state, also when it names a bucket.

Only a bucket policy can grant an anonymous request, so the authorizer refuses one on a bucket
without a policy before reading the bucket's owner record, its keystore anchor or the backend.
Counted on the wire by the hop between the proxy and a real moto server: a flood of anonymous
requests naming random buckets and keys costs at most one listing of the hidden bucket's
`bucket-policy/` names per record lifetime (5 s), and a public bucket still answers anonymously.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import start_proxy

from .harness import error_code, raw_request

FLOOD = 300


@pytest.fixture(scope="module")
def counted(hop, tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("anon-cost"), "s3", hop.url)
    yield endpoint
    thread.stop()


def _requests(hop) -> list[tuple[str, str]]:
    seen = [(m, p) for m, p in hop.seen if p != "/"]  # not the readiness probe's ListBuckets (its own timer)
    hop.seen.clear()
    return seen


def test_anonymous_requests_naming_random_buckets_cost_no_backend_or_keystore_read(counted, hop):
    hop.seen.clear()
    methods = ("GET", "HEAD", "PUT", "DELETE")
    for i in range(FLOOD):
        bucket = f"anon-{uuid.uuid4().hex[:20]}"
        status, _, body = raw_request(counted.url, methods[i % 4], f"/{bucket}/{uuid.uuid4().hex}?x-id={i}")
        assert status == 403, (status, body[:200])
        if methods[i % 4] != "HEAD":
            assert error_code(body) == "AccessDenied"
    seen = _requests(hop)
    listings = [p for m, p in seen if m == "GET" and p.startswith("/s3proxy-internal")]
    assert len(seen) == len(listings) <= 2, seen  # one listing per 5 s lifetime; nothing per request
    assert all("prefix=bucket-policy" in p for p in listings), listings


def test_a_bucket_made_public_answers_anonymously_at_once(counted, hop):
    s3 = counted.client()
    public = f"anon-pub-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=public)
    s3.put_object(Bucket=public, Key="hello.txt", Body=b"hello, world")
    assert raw_request(counted.url, "GET", f"/{public}/hello.txt")[0] == 403  # no policy yet
    s3.delete_public_access_block(Bucket=public)
    s3.put_bucket_policy(Bucket=public, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{public}/*"}]}))
    status, _, body = raw_request(counted.url, "GET", f"/{public}/hello.txt")
    assert (status, body) == (200, b"hello, world")
    assert raw_request(counted.url, "PUT", f"/{public}/other.txt", body=b"x")[0] == 403  # only what it grants
