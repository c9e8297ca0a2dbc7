"""Encryption modes: how an object's data key is obtained, wrapped, stored and recovered.

A request's headers (or the bucket's default) resolve once into one mode value (`resolve.py`);
the object store then calls `seal` on writes and `unseal` on reads, and never asks which mode it
holds. SSE-S3 and SSE-KMS wrap data keys with the KMS core; SSE-C wraps them under a key derived
from the customer's key, which is never stored.
"""
