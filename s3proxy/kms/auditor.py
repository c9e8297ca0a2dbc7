"""The Auditor: exactly one CloudTrail-shaped record per key-service call, success or failure.

`audited(name)` wraps a public KeyService method so that its `auditor` emits one record per call.
Only parameters named in `_AUDITED` reach the record: plaintext, ciphertext, messages, signatures
and key material are never among them. While a call runs, every key it looks up is noted (`note`)
and becomes one of the record's `resources`. A call made inside another audited call is recorded
once, by the outer one.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .audit import AuditSink
from .caller import Caller
from .config import Config
from .errors import KmsError

# python parameter name -> CloudTrail requestParameters name
_AUDITED = {
    "key_id": "keyId", "context": "encryptionContext", "key_spec": "keySpec", "number_of_bytes": "numberOfBytes",
    "key_usage": "keyUsage", "encryption_algorithm": "encryptionAlgorithm", "signing_algorithm": "signingAlgorithm",
    "mac_algorithm": "macAlgorithm", "message_type": "messageType", "alias_name": "aliasName",
    "target_key_id": "targetKeyId", "destination_key_id": "destinationKeyId", "source_key_id": "sourceKeyId",
    "source_context": "sourceEncryptionContext", "destination_context": "destinationEncryptionContext",
    "pending_window_in_days": "pendingWindowInDays", "rotation_period_in_days": "rotationPeriodInDays",
    "grantee_principal": "granteePrincipal", "retiring_principal": "retiringPrincipal", "operations": "operations",
    "grant_id": "grantId", "key_pair_spec": "keyPairSpec", "policy_name": "policyName", "tag_keys": "tagKeys",
    "description": "description",
}


class Audited(Protocol):
    """What `audited` needs of the object whose methods it wraps."""

    @property
    def auditor(self) -> Auditor: ...


S = TypeVar("S", bound=Audited)
P = ParamSpec("P")
R = TypeVar("R")
Operation = Callable[Concatenate[S, Caller, P], R]


def audited(name: str, *, read_only: bool = False) -> Callable[[Operation[S, P, R]], Operation[S, P, R]]:
    """Mark a method (self, caller, ...) as the KMS operation `name`: audited once per call."""

    def wrap(fn: Operation[S, P, R]) -> Operation[S, P, R]:
        names = list(inspect.signature(fn).parameters)[2:]  # after self, caller

        @functools.wraps(fn)
        def call(self: S, caller: Caller, /, *args: P.args, **kwargs: P.kwargs) -> R:
            auditor = self.auditor
            params = auditor.parameters(names, args, kwargs)
            outer = auditor.enter()
            error: KmsError | None = None
            try:
                return fn(self, caller, *args, **kwargs)
            except KmsError as exc:
                error = exc
                raise
            except Exception:
                error = KmsError()  # recorded as KMSInternalException; the caller sees the original
                raise
            finally:
                auditor.leave(outer, name, caller, params, error, read_only)

        return call

    return wrap


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


class Auditor:
    """Builds each call's record and hands it to the AuditSink (the hash-chained log, in production)."""

    def __init__(
        self, sink: AuditSink, config: Config, *,
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.sink = sink
        self._config = config
        self._clock = clock
        self._rand = rand
        self._call = threading.local()  # .resources: the key ARNs the running call touched

    @staticmethod
    def parameters(names: list[str], args: tuple[object, ...], kwargs: Mapping[str, object]) -> dict[str, object]:
        """The call's audited request parameters, by their CloudTrail names."""
        given = dict(zip(names, args, strict=False), **kwargs)
        return {_AUDITED[k]: _jsonable(v) for k, v in given.items() if k in _AUDITED and v is not None}

    def enter(self) -> list[str] | None:
        """Start a call; returns the outer call's resources (None at the top level) for `leave`."""
        outer: list[str] | None = getattr(self._call, "resources", None)
        self._call.resources = []
        return outer

    def note(self, arn: str) -> None:
        """The running call touched the key `arn` (a no-op outside any audited call)."""
        resources: list[str] | None = getattr(self._call, "resources", None)
        if resources is not None and arn not in resources:
            resources.append(arn)

    def leave(self, outer: list[str] | None, name: str, caller: Caller, params: dict[str, object],
              error: KmsError | None, read_only: bool) -> None:
        resources: list[str] = self._call.resources
        self._call.resources = outer
        if outer is None:  # nested operations audit once, at the top
            self.sink.emit(self.record(name, caller, params, resources, error, read_only))

    def record(self, name: str, caller: Caller, params: dict[str, object], resources: list[str],
               error: KmsError | None, read_only: bool) -> dict[str, Any]:
        """The CloudTrail event for one call."""
        now = self._clock()
        account_id = self._config.account_id
        if caller.is_service:
            identity: dict[str, Any] = {"type": "AWSService", "invokedBy": caller.via_service}
        else:
            identity = {
                "type": "IAMUser", "principalId": caller.access_key, "arn": caller.arn,
                "accountId": caller.account_id, "accessKeyId": caller.access_key, "userName": caller.user_name,
            }
            if caller.via_service:
                identity["invokedBy"] = caller.via_service
        record: dict[str, Any] = {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "kms.amazonaws.com",
            "eventName": name,
            "awsRegion": self._config.region,
            "sourceIPAddress": caller.via_service if caller.via_service and not caller.source_ip else caller.source_ip,
            "userAgent": caller.user_agent,
            "requestParameters": params or None,
            "responseElements": None,
            "requestID": caller.request_id or new_uuid(self._rand),
            "eventID": new_uuid(self._rand),
            "readOnly": read_only,
            "resources": [{"ARN": arn, "accountId": account_id, "type": "AWS::KMS::Key"} for arn in resources],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account_id,
        }
        if error is not None:
            record["errorCode"] = error.code
            record["errorMessage"] = error.text
        return record

    def close(self) -> None:
        self.sink.close()


def new_uuid(rand: Callable[[int], bytes]) -> str:
    """A random (version 4) UUID string from `rand`."""
    return str(uuid.UUID(bytes=rand(16), version=4))
