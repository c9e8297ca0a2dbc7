"""The Auditor: exactly one CloudTrail-shaped record per key-service call, success or failure.

`audited(name)` wraps a public KeyService method so that its `auditor` emits one record per call.
Only parameters named in `_AUDITED` reach the record: plaintext, ciphertext, messages, signatures
and key material are never among them. While a call runs, every key it looks up is noted (`note`)
and becomes one of the record's `resources`. A call made inside another audited call is recorded
once, by the outer one.

Uses of a cached S3 Bucket Key are no KMS calls, yet each is authorized and must be accounted
for. `count_use` tallies them per second and per (access key, source IP, key, bucket, operation,
error): one `BucketKeyUse` record per tally, with its count, written when its second is over (by
the next use after it, a timer about a second later, or `close`). The hot path takes a lock and
bumps a counter; the record is built off it.
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
    "description": "description", "origin": "origin", "wrapping_algorithm": "wrappingAlgorithm",
    "wrapping_key_spec": "wrappingKeySpec", "expiration_model": "expirationModel", "valid_to": "validTo",
    "import_type": "importType", "key_material_id": "keyMaterialId", "key_agreement_algorithm": "keyAgreementAlgorithm",
    "custom_key_store_id": "customKeyStoreId", "custom_key_store_name": "customKeyStoreName",
    "new_custom_key_store_name": "newCustomKeyStoreName", "cloud_hsm_cluster_id": "cloudHsmClusterId",
    "trust_anchor_certificate": "trustAnchorCertificate", "custom_key_store_type": "customKeyStoreType",
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
        flush_after: float = 1.05,
    ) -> None:
        self.sink = sink
        self._config = config
        self._clock = clock
        self._rand = rand
        self._call = threading.local()  # .resources: the key ARNs the running call touched
        # bucket-key uses: (second, access key, source ip, key ARN, bucket, operation, error code) -> [count, caller, error]
        self._uses: dict[tuple[int, str, str | None, str, str, str, str | None], list[Any]] = {}
        self._uses_second = -1
        self._uses_lock = threading.Lock()
        self._flush_after = flush_after
        self._timer: threading.Timer | None = None

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

    def count_use(self, operation: str, caller: Caller, key_arn: str, bucket: str, error: KmsError | None) -> None:
        """One use of a cached bucket key (`operation`: Decrypt or GenerateDataKey), allowed or refused with `error`."""
        second = int(self._clock())
        tally = (second, caller.access_key, caller.source_ip, key_arn, bucket, operation, error.code if error else None)
        done: list[tuple[tuple[Any, ...], list[Any]]] = []
        with self._uses_lock:
            if second > self._uses_second:
                done = self._take_before(second)
                self._uses_second = second
            entry = self._uses.get(tally)
            if entry is None:
                self._uses[tally] = [1, caller, error]
                if self._timer is None:
                    self._timer = threading.Timer(self._flush_after, self._on_timer)
                    self._timer.daemon = True
                    self._timer.start()
            else:
                entry[0] += 1
        self._emit_uses(done)

    def _take_before(self, second: int) -> list[tuple[tuple[Any, ...], list[Any]]]:
        """Remove and return the tallies of seconds before `second` (under the lock)."""
        done = [(k, v) for k, v in self._uses.items() if k[0] < second]
        for k, _ in done:
            del self._uses[k]
        return done

    def _on_timer(self) -> None:
        with self._uses_lock:
            self._timer = None
            done = self._take_before(int(self._clock()))
            if self._uses:  # the current second's tallies: look again once it is over
                self._timer = threading.Timer(self._flush_after, self._on_timer)
                self._timer.daemon = True
                self._timer.start()
        self._emit_uses(done)

    def flush_uses(self) -> None:
        """Write every tally now, the current second's included."""
        with self._uses_lock:
            done = list(self._uses.items())
            self._uses.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._emit_uses(done)

    def _emit_uses(self, done: list[tuple[tuple[Any, ...], list[Any]]]) -> None:
        for (second, _, _, key_arn, bucket, operation, _), (count, caller, error) in sorted(done, key=lambda kv: kv[0][0]):
            record = self.record("BucketKeyUse", caller, {"keyId": key_arn, "bucketName": bucket, "operation": operation},
                                 [key_arn], error, operation == "Decrypt", now=second)
            record.update(eventType="AwsServiceEvent", managementEvent=False, requestID=None,
                          additionalEventData={"useCount": count, "periodSeconds": 1})
            self.sink.emit(record)

    def record(self, name: str, caller: Caller, params: dict[str, object], resources: list[str],
               error: KmsError | None, read_only: bool, *, now: float | None = None) -> dict[str, Any]:
        """The CloudTrail event for one call."""
        now = self._clock() if now is None else now
        # the account of the key the call touched (else the caller's); the proxy's own calls: its account
        account_id = resources[0].split(":")[4] if resources else caller.account_id
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
            "resources": [{"ARN": arn, "accountId": arn.split(":")[4], "type": "AWS::KMS::Key"} for arn in resources],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account_id,
        }
        if error is not None:
            record["errorCode"] = error.code
            record["errorMessage"] = error.text
        return record

    def close(self) -> None:
        self.flush_uses()
        self.sink.close()


def new_uuid(rand: Callable[[int], bytes]) -> str:
    """A random (version 4) UUID string from `rand`."""
    return str(uuid.UUID(bytes=rand(16), version=4))
