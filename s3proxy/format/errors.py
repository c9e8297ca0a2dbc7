"""The one failure type of the at-rest format: the bytes or the envelope did not authenticate."""

from __future__ import annotations


class IntegrityError(Exception):
    """Ciphertext or envelope failed authentication.

    Raised for every check (tag, length, finality, trailing data, envelope MAC, malformed envelope)
    with the same message, so a caller or a client learns nothing about which check failed.
    """

    MESSAGE = "stored object failed authentication"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)
