"""Who is calling the key service: the access key that signed the request, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A verified principal. `arn` is the IAM user ARN policies and grants match against."""

    access_key: str
    user_name: str
    account_id: str
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    # set by the S3 data path ("s3.<region>.amazonaws.com") so policies can test kms:ViaService
    via_service: str | None = None
    # the proxy itself (SSE-S3 service key); audited as an AWS service, never an API caller
    is_service: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:user/{self.user_name}"

    @property
    def account_root(self) -> str:
        return f"arn:aws:iam::{self.account_id}:root"


def service_caller(account_id: str, *, request_id: str | None = None) -> Caller:
    """The principal the proxy uses for its own SSE-S3 key (audited as `s3.amazonaws.com`)."""
    return Caller(
        access_key="", user_name="s3proxy-service", account_id=account_id,
        request_id=request_id, via_service="s3.amazonaws.com", is_service=True,
    )
