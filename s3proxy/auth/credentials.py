"""The proxy's own credential store: access key id -> secret, and the user, account and policy it belongs to.

These credentials are the ones clients use to talk to the proxy; they are unrelated to the
credentials the proxy uses towards its backend. Each names an IAM-style user of one account
(`arn:aws:iam::<account>:user/<name>`) and carries that user's identity policy (full access
when none was configured). Secrets never appear in a repr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..policy import FULL_ACCESS, Policy, unique_id

DEFAULT_ACCOUNT = "000000000000"


@dataclass(frozen=True)
class Credential:
    """One access key pair and the user it belongs to."""

    access_key: str
    secret_key: str = field(repr=False)
    user_name: str = ""
    account: str = DEFAULT_ACCOUNT
    policy: Policy = field(default=FULL_ACCESS, repr=False, compare=False)

    @property
    def arn(self) -> str:
        """The user's ARN, as policies, the audit log and the access log name it."""
        return f"arn:aws:iam::{self.account}:user/{self.user_name}"

    @property
    def user_id(self) -> str:
        """A stable unique id for the user (aws:userid)."""
        return unique_id(self.arn)


MAX_SIGNING_KEYS = 4096

# who sends a request that carries no signature at all: no account, a policy that allows nothing; only
# a bucket policy granting `Principal: *` (where Block Public Access lets it) lets it do anything
ANONYMOUS = Credential("", "", "", "", Policy(()))


class CredentialStore:
    """An immutable map of access key id to Credential."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self._by_key: dict[str, Credential] = {}
        self._signing_keys: dict[tuple[str, str, str, str], bytes] = {}
        for credential in credentials:
            if not credential.access_key or not credential.secret_key:
                raise ValueError("a credential needs an access key and a secret key")
            if credential.access_key in self._by_key:
                raise ValueError(f"duplicate access key {credential.access_key!r}")
            self._by_key[credential.access_key] = credential

    def lookup(self, access_key: str) -> Credential | None:
        """The credential for access_key, or None when it is unknown."""
        return self._by_key.get(access_key)

    def signing_key(self, credential: Credential, date: str, region: str, service: str,
                    derive: Callable[[str, str, str, str], bytes]) -> bytes:
        """SigV4's signing key for (credential, day, region, service), derived once (four HMACs) and kept.

        Only a known credential, a date the signature's time allows (within 15 minutes of now, so
        at most two days are live) and this endpoint's region and services reach here: the cache
        stays a few entries per user; it is emptied whole past MAX_SIGNING_KEYS all the same."""
        scope = (credential.access_key, date, region, service)
        key = self._signing_keys.get(scope)
        if key is None:
            if len(self._signing_keys) >= MAX_SIGNING_KEYS:
                self._signing_keys.clear()
            key = self._signing_keys[scope] = derive(credential.secret_key, date, region, service)
        return key

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"CredentialStore({sorted(self._by_key)!r})"
