"""Virtual-hosted-style addressing: with `virtual_host_domains = s3.test`, `bucket.s3.test/key`
names bucket/key, as S3 reads `bucket.s3.amazonaws.com/key`; path style keeps working.

The requests are signed by botocore for the virtual host and sent to the proxy's loopback
address with that Host header (no DNS for s3.test on this machine)."""

from __future__ import annotations

import uuid

import pytest
from botocore.auth import HmacV1Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import ACCESS_KEY, SECRET_KEY, start_proxy
from .front_helpers import send, signed_headers


@pytest.fixture(scope="module")
def vproxy(tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("vhost"), "fs", None, virtual_host_domains="s3.test")
    yield endpoint
    thread.stop()


def _port(endpoint) -> int:
    return int(endpoint.url.rsplit(":", 1)[1])


def test_sigv4_virtual_hosted_put_get_and_list(vproxy):
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    vproxy.client().create_bucket(Bucket=bucket)  # path style, as before
    host = f"http://{bucket}.s3.test:{_port(vproxy)}"
    put = signed_headers(host, "PUT", "/dir/obj%20name", headers={"Content-Length": "5"})
    assert send(vproxy.url, "PUT", "/dir/obj%20name", put, b"hello").status == 200
    got = send(vproxy.url, "GET", "/dir/obj%20name", signed_headers(host, "GET", "/dir/obj%20name"))
    assert (got.status, got.body) == (200, b"hello")
    listed = send(vproxy.url, "GET", "/?list-type=2", signed_headers(host, "GET", "/?list-type=2"))
    assert listed.status == 200 and b"<Key>dir/obj name</Key>" in listed.body
    # and the same object by path style
    assert vproxy.client().get_object(Bucket=bucket, Key="dir/obj name")["Body"].read() == b"hello"


def test_sigv2_virtual_hosted_request_signs_the_bucket_in_its_resource(vproxy):
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    s3 = vproxy.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2 body")
    request = AWSRequest(method="GET", url=f"http://{bucket}.s3.test:{_port(vproxy)}/k")
    request.auth_path = f"/{bucket}/k"
    HmacV1Auth(Credentials(ACCESS_KEY, SECRET_KEY)).add_auth(request)
    got = send(vproxy.url, "GET", "/k", dict(request.headers.items()) | {"Host": f"{bucket}.s3.test:{_port(vproxy)}"})
    assert (got.status, got.body) == (200, b"v2 body")


def test_a_host_outside_the_configured_domains_is_path_style(vproxy):
    bucket = f"v-{uuid.uuid4().hex[:12]}"
    vproxy.client().create_bucket(Bucket=bucket)
    other = f"http://{bucket}.elsewhere.test:{_port(vproxy)}"
    resp = send(vproxy.url, "GET", "/", signed_headers(other, "GET", "/"))
    assert resp.status == 200 and b"<ListAllMyBucketsResult" in resp.body  # "/" on an unknown host: ListBuckets
