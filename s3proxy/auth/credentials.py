"""The proxy's own credential store: access key id -> secret, looked up by request authentication.

These credentials are the ones clients use to talk to the proxy; they are unrelated to the
credentials the proxy uses towards its backend. Secrets never appear in a repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Credential:
    """One access key pair and the user it belongs to."""

    access_key: str
    secret_key: str = field(repr=False)
    user_name: str = ""


class CredentialStore:
    """An immutable map of access key id to Credential."""

    def __init__(self, credentials: Iterable[Credential]) -> None:
        self._by_key: dict[str, Credential] = {}
        for credential in credentials:
            if not credential.access_key or not credential.secret_key:
                raise ValueError("a credential needs an access key and a secret key")
            if credential.access_key in self._by_key:
                raise ValueError(f"duplicate access key {credential.access_key!r}")
            self._by_key[credential.access_key] = credential

    def lookup(self, access_key: str) -> Credential | None:
        """The credential for access_key, or None when it is unknown."""
        return self._by_key.get(access_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        return f"CredentialStore({sorted(self._by_key)!r})"
