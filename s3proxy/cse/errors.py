"""Failures of client-side encryption: one type per thing the caller can act on."""

from __future__ import annotations


class CseError(Exception):
    """Base of every client-side encryption failure."""


class DecryptionFailed(CseError):
    """The object could not be authenticated: tampered body or envelope, wrong key, failed commitment.

    Deliberately says nothing about which check failed (see docs/CSE.md, "Errors").
    """

    def __init__(self, message: str = "decryption failed: the object or its envelope is not authentic") -> None:
        super().__init__(message)


class EnvelopeError(CseError):
    """The object's encryption metadata is missing, incomplete, mixes format versions or is malformed."""


class InstructionFileMissing(EnvelopeError):
    """The object names no envelope in its metadata and its instruction file does not exist."""


class EncryptionContextMismatch(CseError):
    """The encryption context given on read differs from the one stored with the object."""


class KeyringMismatch(CseError):
    """The object's key was wrapped by an algorithm the configured keyring cannot unwrap."""


class UnsupportedAlgorithm(CseError):
    """The envelope names a content or wrapping algorithm this library does not implement."""
