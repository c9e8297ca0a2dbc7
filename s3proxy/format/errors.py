"""The one failure type of the at-rest format: stored bytes, metadata or a record did not authenticate (FORMAT.md §17)."""

from __future__ import annotations


class IntegrityError(Exception):
    """Something stored failed authentication.

    Raised for every check (tag, length, finality, trailing data, envelope MAC, metadata MAC,
    malformed or unknown field, sealed ETag, trailer, record seal, generation) with the same
    message, so a caller or a client learns nothing about which check failed. `field` names what
    failed, for the proxy's own log line only: it is not in the message, the args or the repr,
    and it never reaches a response.
    """

    MESSAGE = "stored object failed authentication"

    def __init__(self, field: str | None = None) -> None:
        super().__init__(self.MESSAGE)
        self.field = field
