"""The one error of the policy engine: a document it will not accept, with a message for whoever wrote it."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy is malformed, too large, or says something the engine cannot evaluate exactly.

    The KMS answers it as MalformedPolicyDocumentException, S3 as MalformedPolicy, and the proxy
    refuses to start on an identity policy that raises it; `str(error)` is the message for each.
    """
