"""What every key-service operation shares: key lookup, the state check, authorization and the audit record.

`operation(name)` wraps a public method so that exactly one CloudTrail-shaped record is emitted
per call, success or failure. Only parameters named in `_AUDITED` reach the record: plaintext,
ciphertext, messages, signatures and key material are never among them.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from . import lifecycle
from .audit import AuditSink
from .caller import Caller
from .errors import AccessDeniedException, KmsError, NotFoundException
from .policy import DENY, ALLOW, Grant, Request, evaluate, parse_policy
from .store import KeyRecord, KeyRecords

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
F = TypeVar("F", bound=Callable[..., Any])


def operation(name: str, *, read_only: bool = False) -> Callable[[F], F]:
    """Mark a KeyService method as the KMS operation `name`: audited once per call."""

    def wrap(fn: F) -> F:
        names = list(inspect.signature(fn).parameters)[2:]  # after self, caller

        @functools.wraps(fn)
        def call(self: "ServiceCore", caller: Caller, *args: Any, **kwargs: Any) -> Any:
            given = dict(zip(names, args), **kwargs)
            params = {_AUDITED[k]: _jsonable(v) for k, v in given.items() if k in _AUDITED and v is not None}
            outer = getattr(self._call, "resources", None)
            self._call.resources = []
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
                resources, self._call.resources = self._call.resources, outer
                if outer is None:  # nested operations (data-key seam -> Decrypt) audit once, at the top
                    self._emit(name, caller, params, resources, error, read_only)

        return call  # type: ignore[return-value]

    return wrap


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


@dataclass(frozen=True)
class Config:
    region: str = "us-east-1"
    account_id: str = "000000000000"
    administrators: tuple[str, ...] = ()  # principal ARNs (or user names) with full access to every key


class ServiceCore:
    """Lookup, state, authorization and audit; the operations live in the subclasses."""

    def __init__(
        self, records: KeyRecords, audit: AuditSink, config: Config, *,
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.records = records
        self.audit = audit
        self.config = config
        self.clock = clock
        self.rand = rand
        self._call = threading.local()
        self._policies: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    # naming -----------------------------------------------------------------------------------
    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.config.region}:{self.config.account_id}:key/{key_id}"

    def alias_arn(self, alias_name: str) -> str:
        return f"arn:aws:kms:{self.config.region}:{self.config.account_id}:{alias_name}"

    def admin_arns(self) -> list[str]:
        return [a if a.startswith("arn:") else f"arn:aws:iam::{self.config.account_id}:user/{a}" for a in self.config.administrators]

    # lookup -----------------------------------------------------------------------------------
    def lookup(self, caller: Caller, key_id: str, *, aliases: bool = True) -> KeyRecord:
        """Find the key `key_id` names (id, key ARN, alias or alias ARN); NotFoundException if none."""
        if not key_id:
            raise NotFoundException("Invalid keyId ''")
        alias_name = None
        kid = key_id
        if key_id.startswith("arn:"):
            parts = key_id.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise NotFoundException(f"Invalid arn {key_id}")
            if parts[3] != self.config.region or parts[4] != self.config.account_id:
                raise NotFoundException(f"Key '{key_id}' does not exist")
            resource = parts[5]
            if resource.startswith("alias/"):
                alias_name = resource
            elif resource.startswith("key/"):
                kid = resource[4:]
            else:
                raise NotFoundException(f"Invalid arn {key_id}")
        elif key_id.startswith("alias/"):
            alias_name = key_id
        if alias_name is not None:
            if not aliases:
                raise NotFoundException(f"Invalid keyId {key_id}")
            alias = self.records.alias(alias_name)
            if alias is None:
                raise NotFoundException(f"Alias {self.alias_arn(alias_name)} is not found.")
            kid = alias.target
        record = self.records.key(kid)
        if record is None:
            try:
                uuid.UUID(kid)
            except ValueError:
                raise NotFoundException(f"Invalid keyId {key_id}") from None
        if record is None or (record.key_manager == "SERVICE" and not caller.is_service):
            raise NotFoundException(f"Key '{self.key_arn(kid)}' does not exist")
        record = self.due(record)
        if record is None:
            raise NotFoundException(f"Key '{self.key_arn(kid)}' does not exist")
        resources = getattr(self._call, "resources", None)
        if resources is not None and record.arn not in resources:
            resources.append(record.arn)
        return record

    def due(self, record: KeyRecord) -> KeyRecord | None:
        """Carry out what time has made due: deletion at the end of the waiting period, automatic rotation."""
        now = self.clock()
        if record.state == lifecycle.PENDING_DELETION and record.deletion_date is not None and record.deletion_date <= now:
            with self._lock:
                if self.records.key(record.key_id) is not None:
                    self.records.remove_key(record.key_id)
            return None
        if record.rotation_enabled and record.next_rotation is not None and record.next_rotation <= now:
            return self.records.update_key(record.key_id, lambda r: self._rotated(r, "AUTOMATIC", now))
        return record

    def _rotated(self, r: KeyRecord, kind: str, now: float) -> KeyRecord:
        """`r` with one more version of key material (the old ones stay to decrypt old blobs)."""
        from .keys import generate_material  # local: keys imports cryptography's asymmetric modules
        from dataclasses import replace

        if kind == "AUTOMATIC":
            if not (r.rotation_enabled and r.next_rotation is not None and r.next_rotation <= now):
                return r  # another thread rotated first
            nxt = r.next_rotation
            while nxt <= now:
                nxt += (r.rotation_period or 365) * 86400
        else:
            nxt = r.next_rotation
        return replace(
            r, materials=r.materials + (generate_material(r.key_spec, self.rand),),
            rotations=r.rotations + ((len(r.materials) + 1, now, kind),), next_rotation=nxt,
        )

    def usable(self, caller: Caller, key_id: str, op: str, action: str | None = None,
               context: Mapping[str, str] | None = None, *, aliases: bool = True) -> KeyRecord:
        """Lookup, then authorization, then the state table: the order AWS answers in."""
        record = self.lookup(caller, key_id, aliases=aliases)
        self.authorize(caller, record, action or op, context)
        lifecycle.check_state(op, record.state, record.arn)
        return record

    # authorization ------------------------------------------------------------------------------
    def _policy_doc(self, text: str) -> dict[str, Any]:
        doc = self._policies.get(text)
        if doc is None:
            doc = parse_policy(text)
            if len(self._policies) > 1024:
                self._policies.clear()
            self._policies[text] = doc
        return doc

    def authorize(self, caller: Caller, record: KeyRecord, action: str, context: Mapping[str, str] | None = None) -> None:
        """AccessDeniedException unless the key policy or a grant lets `caller` do kms:`action`."""
        if caller.is_service:
            return
        decision = evaluate(self._policy_doc(record.policy), Request(caller, "kms:" + action, context))
        if decision == DENY:
            raise AccessDeniedException(
                f"User: {caller.arn} is not authorized to perform: kms:{action} on resource: {record.arn} "
                f"with an explicit deny in a resource-based policy"
            )
        if decision == ALLOW:
            return
        if any(Grant.from_json(g).allows(caller, action, context) for g in record.grants):
            return
        raise AccessDeniedException(
            f"User: {caller.arn} is not authorized to perform: kms:{action} on resource: {record.arn} "
            f"because no resource-based policy allows the kms:{action} action"
        )

    # audit ------------------------------------------------------------------------------------
    def _emit(self, name: str, caller: Caller, params: dict[str, Any], resources: list[str],
              error: KmsError | None, read_only: bool) -> None:
        now = self.clock()
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
            "eventTime": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "kms.amazonaws.com",
            "eventName": name,
            "awsRegion": self.config.region,
            "sourceIPAddress": caller.via_service if caller.via_service and not caller.source_ip else caller.source_ip,
            "userAgent": caller.user_agent,
            "requestParameters": params or None,
            "responseElements": None,
            "requestID": caller.request_id or new_uuid(self.rand),
            "eventID": new_uuid(self.rand),
            "readOnly": read_only,
            "resources": [{"ARN": arn, "accountId": self.config.account_id, "type": "AWS::KMS::Key"} for arn in resources],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": self.config.account_id,
        }
        if error is not None:
            record["errorCode"] = error.code
            record["errorMessage"] = error.text
        self.audit.emit(record)


def new_uuid(rand: Callable[[int], bytes]) -> str:
    """A random (version 4) UUID string from `rand`."""
    return str(uuid.UUID(bytes=rand(16), version=4))
