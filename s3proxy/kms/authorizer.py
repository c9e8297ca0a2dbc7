"""The Authorizer: which key a request names, and whether its caller may use it for this operation now.

It answers in the order AWS does: the lookup (NotFoundException; the proxy's own SERVICE key does
not exist for API callers), then the policies and grants (AccessDeniedException), then the key
state table (DisabledException, KMSInvalidStateException).

Keys belong to accounts. A bare key id or alias names a key of the caller's own account; a key
or alias ARN may name another account's key, which only the operations AWS allows across
accounts (cryptography, DescribeKey, grants) may use. Access is decided by the policy engine
(`s3proxy.policy.decide`) from the caller's identity policy and the key policy, as AWS does for
KMS: the key policy must allow, naming the caller or `*`, or naming the caller's account, in which
case the identity policy must allow as well; across accounts both must. A grant allows what no
policy allowed (never what one denies explicitly).

Stored key policies are parsed once per text (up to 1,024 cached) with `parse_stored`: a policy
accepted before the engine refused unknown keys and operators is evaluated fail-closed, and the
log says so once per policy.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from ..policy import KEY_POLICY, Match, Outcome, Policy, Request, decide, denial_message, evaluate, parse_stored, time_context
from . import lifecycle
from .caller import Caller
from .config import Config
from .errors import AccessDeniedException, NotFoundException
from .policy import Grant
from .registry import KeyRecord, Registry

_POLICY_CACHE = 1024
_log = logging.getLogger(__name__)

# operations AWS lets a caller run on another account's key ("Cross-account use: Yes")
CROSS_ACCOUNT = frozenset({
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "GenerateMac", "VerifyMac", "Sign", "Verify", "GetPublicKey",
    "DescribeKey", "CreateGrant", "ListGrants", "RetireGrant", "RevokeGrant", "GetKeyRotationStatus",
    "DeriveSharedSecret",
})
Extra = Mapping[str, Sequence[str]]


class Authorizer:
    def __init__(self, registry: Registry, config: Config, *, note: Callable[[str], None] = lambda arn: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._config = config
        self._note = note  # told the ARN of each key looked up (the audit record's resources)
        self._clock = clock
        self._policies: dict[str, Policy] = {}
        # whether a custom key store is connected (custom_stores.py sets it): its keys are Unavailable otherwise
        self.store_connected: Callable[[str], bool] = lambda store_id: False
        self._second: tuple[int, dict[str, tuple[str, ...]]] = (-1, {})

    def lookup(self, caller: Caller, key_id: str, *, aliases: bool = True, anywhere: bool = False) -> KeyRecord:
        """Find the key `key_id` names (id, key ARN, alias or alias ARN); NotFoundException if none.

        `anywhere`: a bare key id may name a key of any account (the key id inside a ciphertext blob)."""
        if not key_id:
            raise NotFoundException("Invalid keyId ''")
        config = self._config
        account = caller.account_id
        alias_name = None
        kid = key_id
        if key_id.startswith("arn:"):
            parts = key_id.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise NotFoundException(f"Invalid arn {key_id}")
            if parts[3] != config.region:
                raise NotFoundException(f"Key '{key_id}' does not exist")
            account, resource = parts[4], parts[5]
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
            alias = self._registry.alias(config.alias_entry(account, alias_name))
            if alias is None:
                raise NotFoundException(f"Alias {config.alias_arn(alias_name, account)} is not found.")
            kid = alias.target
        record = self._registry.key(kid)
        if record is None:
            try:
                uuid.UUID(kid)
            except ValueError:
                raise NotFoundException(f"Invalid keyId {key_id}") from None
        if (record is None or (record.key_manager == "SERVICE" and not caller.is_service)
                or (record.account_id != account and not (anywhere and alias_name is None))):
            raise NotFoundException(f"Key '{config.key_arn(kid, account)}' does not exist")
        record = self._registry.due(record)
        if record is None:
            raise NotFoundException(f"Key '{config.key_arn(kid, account)}' does not exist")
        self._note(record.arn)
        return record

    def usable(self, caller: Caller, key_id: str, op: str, action: str | None = None,
               context: Mapping[str, str] | None = None, *, aliases: bool = True, extra: Extra | None = None) -> KeyRecord:
        """Lookup, then authorization, then the state table: the order AWS answers in."""
        record = self.lookup(caller, key_id, aliases=aliases)
        if record.account_id != caller.account_id and op not in CROSS_ACCOUNT:
            raise NotFoundException(f"Key '{record.arn}' does not exist")
        self.authorize(caller, record, action or op, context, extra)
        self.check_state(op, record)
        return record

    def state(self, record: KeyRecord) -> str:
        """The key's state as it shows: Unavailable while its custom key store is not connected."""
        if record.custom_key_store_id is None:
            return record.state
        return lifecycle.effective_state(record.state, self.store_connected(record.custom_key_store_id))

    def check_state(self, op: str, record: KeyRecord) -> None:
        """The error the key state table gives for `op` on this key now, if any."""
        lifecycle.check_state(op, self.state(record), record.arn)

    def authorize(self, caller: Caller, record: KeyRecord, action: str, context: Mapping[str, str] | None = None,
                  extra: Extra | None = None) -> None:
        """AccessDeniedException unless the policies or a grant let `caller` do kms:`action` on the key now."""
        if caller.is_service:
            return
        policy = self.policy(record)
        # most key policies test no condition key: then the request's keys need not be gathered
        keys = self.context(caller, record, context, extra) if policy.reads_context or caller.identity.reads_context else {}
        request = Request(caller.principal, "kms:" + action, record.arn, keys)
        outcome = decide(request, identity=caller.identity, resource=policy, resource_account=record.account_id,
                         resource_must_allow=True)
        if outcome.allowed or (not outcome.explicit and self._granted(caller, record, action, context, request)):
            return
        raise AccessDeniedException(denial_message(request, outcome))

    def authorize_account(self, caller: Caller, action: str, extra: Extra | None = None) -> None:
        """For the operations on no key (CreateKey, ListKeys, ListAliases, GenerateRandom): the identity policy decides."""
        if caller.is_service:
            return
        request = Request(caller.principal, "kms:" + action, "*", self.context(caller, None, None, extra))
        found = evaluate(caller.identity, request)
        if found is not Match.ALLOW:
            outcome = Outcome.DENIED_BY_IDENTITY if found is Match.DENY else Outcome.NO_IDENTITY_ALLOW
            raise AccessDeniedException(denial_message(request, outcome))

    def policy(self, record: KeyRecord) -> Policy:
        """The key's policy, parsed once per text; a stored policy the engine cannot fully read fails closed."""
        text = record.policy
        found = self._policies.get(text)
        if found is None:
            found = parse_stored(text, KEY_POLICY)
            if found.problems:
                _log.warning(
                    "key %s: its key policy has parts this KMS cannot evaluate exactly; they are evaluated "
                    "fail-closed (such a Deny applies, such an Allow does not) until PutKeyPolicy replaces it: %s",
                    record.arn, "; ".join(found.problems),
                )
            if len(self._policies) >= _POLICY_CACHE:
                self._policies.clear()
            self._policies[text] = found
        return found

    def context(self, caller: Caller, record: KeyRecord | None, context: Mapping[str, str] | None,
                extra: Extra | None) -> dict[str, Sequence[str]]:
        """The condition keys of one request: the caller's global keys, the time, and the kms:* keys."""
        out: dict[str, Sequence[str]] = dict(caller.condition_keys)
        out.update(self._time())
        out["kms:calleraccount"] = (caller.account_id,)
        if caller.via_service:
            out["kms:viaservice"] = (caller.via_service,)
        if context:
            for name, value in context.items():
                out["kms:encryptioncontext:" + name] = (value,)
            out["kms:encryptioncontextkeys"] = tuple(context)
        if record is not None:
            out["kms:keyspec"] = (record.key_spec,)
            out["kms:keyusage"] = (record.key_usage,)
            out["kms:keyorigin"] = (record.origin,)
        if extra:
            out.update(extra)
        return out

    def _time(self) -> dict[str, tuple[str, ...]]:
        now = self._clock()
        second, keys = self._second
        if int(now) != second:
            keys = time_context(now)
            self._second = (int(now), keys)
        return keys

    def _granted(self, caller: Caller, record: KeyRecord, action: str, context: Mapping[str, str] | None,
                 request: Request) -> bool:
        """A grant for this operation and context to the caller, or to its account when its identity policy allows."""
        for raw in record.grants:
            grant = Grant.from_json(raw)
            if not grant.covers(action, context):
                continue
            if grant.grantee == caller.arn:
                return True
            if grant.grantee == caller.account_root and evaluate(caller.identity, request) is Match.ALLOW:
                return True
        return False
