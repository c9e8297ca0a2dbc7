"""Who is calling the key service: the access key that signed the request, its account and policy, and how it came."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..policy import FULL_ACCESS, Policy, Principal, principal_context


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
    # aws:SecureTransport (None: unknown, and conditions on it then evaluate fail-closed)
    secure: bool | None = None
    region: str | None = None  # aws:RequestedRegion: the region the request was signed for
    identity: Policy = field(default=FULL_ACCESS, repr=False, compare=False)  # the user's identity policy

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:user/{self.user_name}"

    @property
    def account_root(self) -> str:
        return f"arn:aws:iam::{self.account_id}:root"

    @functools.cached_property
    def principal(self) -> Principal:
        return Principal(self.account_id, self.user_name)

    @functools.cached_property
    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        """The global condition keys of this caller (all but the time), built once per request."""
        return principal_context(self.principal, secure=self.secure, source_ip=self.source_ip, region=self.region,
                                 user_agent=self.user_agent, via_service=self.via_service)


def service_caller(account_id: str, *, request_id: str | None = None) -> Caller:
    """The principal the proxy uses for its own SSE-S3 key (audited as `s3.amazonaws.com`)."""
    return Caller(
        access_key="", user_name="s3proxy-service", account_id=account_id,
        request_id=request_id, via_service="s3.amazonaws.com", is_service=True,
    )
