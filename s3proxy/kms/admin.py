"""The KeyAdmin part of the key service: key lifecycle, rotation, aliases, key policies, grants and tags.

Also the data path's own keys: the AWS-managed `alias/aws/s3` key of each account and the proxy's
hidden SERVICE key, each created on first use. Every operation finds its key through the
Authorizer and changes it in the Registry with compare-and-swap. Keys and aliases belong to the
account of the user who created them. Auditing is the facade's (`service.KeyService`).

Change feed: every change to a key's state, policy or grants is told, once the change is stored,
to each listener registered with the Registry (`KeyService.subscribe`): the S3 Bucket Key cache drops
what it holds for the key. Changes made by other processes sharing the keystore reach them the same way.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from ..policy import Request, decide
from . import keys, lifecycle
from .authorizer import Authorizer
from .caller import Caller, service_caller
from .config import Config
from .custom_stores import CustomKeyStores
from .errors import (
    AlreadyExistsException,
    InvalidAliasNameException,
    InvalidArnException,
    InvalidGrantIdException,
    InvalidGrantTokenException,
    KeystoreConflict,
    LimitExceededException,
    MalformedPolicyDocumentException,
    NotFoundException,
    TagException,
    UnsupportedOperationException,
    ValidationException,
    member_error,
)
from .policy import GRANT_OPERATIONS, Grant, aws_managed_policy, default_policy, parse_key_policy
from .registry import AliasRecord, KeyRecord, Registry

DAY = 86400.0
ON_DEMAND_LIMIT = 10  # per key, as the KMS API reference states (the developer guide now says 25)
_ALIAS_RE = re.compile(r"^alias/[a-zA-Z0-9:/_-]{1,250}$")
_log = logging.getLogger(__name__)


def _flag(value: bool) -> tuple[str]:
    return ("true" if value else "false",)


@dataclass(frozen=True)
class KeyMetadata:
    key_id: str
    arn: str
    account_id: str
    creation_date: float
    enabled: bool
    description: str
    key_usage: str
    key_state: str
    key_spec: str
    origin: str
    key_manager: str
    encryption_algorithms: tuple[str, ...]
    signing_algorithms: tuple[str, ...]
    mac_algorithms: tuple[str, ...]
    deletion_date: float | None
    pending_deletion_window_in_days: int | None
    current_key_material_id: str
    key_agreement_algorithms: tuple[str, ...] = ()
    expiration_model: str | None = None  # imported material (Origin EXTERNAL) only
    valid_to: float | None = None
    custom_key_store_id: str | None = None
    cloud_hsm_cluster_id: str | None = None


@dataclass(frozen=True)
class AliasEntry:
    alias_name: str
    alias_arn: str
    target_key_id: str | None
    creation_date: float | None
    last_updated_date: float | None


@dataclass(frozen=True)
class RotationStatus:
    key_arn: str
    enabled: bool
    rotation_period_in_days: int | None
    next_rotation_date: float | None
    on_demand_rotation_start_date: float | None


@dataclass(frozen=True)
class Rotation:
    key_id: str
    key_material_id: str
    rotation_date: float
    rotation_type: str


@dataclass(frozen=True)
class DeletionScheduled:
    key_arn: str
    deletion_date: float
    key_state: str
    pending_window_in_days: int


def metadata(r: KeyRecord, state: str | None = None, cluster_id: str | None = None) -> KeyMetadata:
    """What DescribeKey shows of a record (`state`: the effective state, when it differs from the stored one;
    `cluster_id`: the CloudHsmClusterId of its custom key store)."""
    info = keys.spec_info(r.key_spec, r.key_usage)
    state = state or r.state
    return KeyMetadata(
        r.key_id, r.arn, r.account_id, r.created, state == lifecycle.ENABLED, r.description, r.key_usage, state,
        r.key_spec, r.origin, r.key_manager, info.encryption, info.signing, info.mac, r.deletion_date, r.pending_window,
        r.material_id(1) if r.origin == "EXTERNAL" else r.material_id(), info.key_agreement,
        r.expiration_model if r.origin == "EXTERNAL" and r.material_check else None, r.valid_to,
        r.custom_key_store_id, cluster_id,
    )


class KeyAdmin:
    """The management half of the KMS API; thread-safe (records change only by compare-and-swap)."""

    def __init__(
        self, registry: Registry, authorizer: Authorizer, config: Config, *,
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
        note: Callable[[str], None] = lambda arn: None, stores: CustomKeyStores | None = None,
    ) -> None:
        self._registry = registry
        self._authz = authorizer
        self._stores = stores
        self._config = config
        self._clock = clock
        self._rand = rand
        self._note = note  # told the ARN of a key this call created (the audit record's resources)
        self._lock = threading.RLock()  # the AWS-managed and service keys are created once
        self._service_arn: str | None = None  # found or made once: every SSE-S3 PUT asks for it

    def purge_due(self) -> int:
        """Delete every key whose waiting period has ended (also done lazily on each access)."""
        before = len(self._registry.keys())
        for r in self._registry.keys():
            self._registry.due(r)
        return before - len(self._registry.keys())

    # keys ---------------------------------------------------------------------------------------
    def _new_id(self) -> str:
        return str(uuid.UUID(bytes=self._rand(16), version=4))

    def _new_record(self, caller: Caller, key_spec: str, key_usage: str, policy: str, description: str,
                    key_manager: str, tags: Mapping[str, str] | None = None, kid: str | None = None,
                    origin: str = "AWS_KMS", store_id: str | None = None) -> KeyRecord:
        kid = kid or self._new_id()
        external = origin == "EXTERNAL"  # no material until ImportKeyMaterial
        record = KeyRecord(
            key_id=kid, arn=self._config.key_arn(kid, caller.account_id), account_id=caller.account_id,
            created=self._clock(),
            key_spec=key_spec, key_usage=key_usage, state=lifecycle.PENDING_IMPORT if external else lifecycle.ENABLED,
            policy=policy, materials=() if external or store_id else (keys.generate_material(key_spec, self._rand),),
            description=description, origin=origin, key_manager=key_manager, tags=tuple(sorted((tags or {}).items())),
            custom_key_store_id=store_id,
        )
        self._registry.add_key(record)
        return record

    def create_key(self, caller: Caller, *, description: str = "", key_usage: str | None = None,
                   key_spec: str = keys.SYMMETRIC, policy: str | None = None, tags: Mapping[str, str] | None = None,
                   origin: str = "AWS_KMS", bypass_policy_lockout_safety_check: bool = False,
                   custom_key_store_id: str | None = None) -> KeyMetadata:
        usage = key_usage or keys.default_usage(key_spec)
        keys.spec_info(key_spec, usage)
        if origin not in ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"):
            raise member_error("origin", "satisfy enum value set: [AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]", origin)
        if origin == "EXTERNAL_KEY_STORE":
            raise UnsupportedOperationException("External key stores (Origin EXTERNAL_KEY_STORE) are not supported by this KMS.")
        if (origin == "AWS_CLOUDHSM") != (custom_key_store_id is not None):
            raise UnsupportedOperationException(
                "A key in a custom key store needs both Origin AWS_CLOUDHSM and its CustomKeyStoreId.")
        if custom_key_store_id is not None and (key_spec, usage) != (keys.SYMMETRIC, keys.ENCRYPT_DECRYPT):
            raise UnsupportedOperationException(
                "A key in a custom key store is a symmetric encryption key: KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT.")
        if len(description) > 8192:
            raise ValidationException("Description must be at most 8192 characters.")
        self._check_tags(tags or {})
        self._authz.authorize_account(caller, "CreateKey", {
            "kms:keyspec": (key_spec,), "kms:keyusage": (usage,), "kms:keyorigin": (origin,),
            "kms:bypasspolicylockoutsafetycheck": _flag(bypass_policy_lockout_safety_check),
        })
        kid = self._new_id()
        if policy is None:  # the creator, and the configured administrators of the same account
            admins = [a for a in self._config.admin_arns() if a.split(":")[4] == caller.account_id]
            policy = default_policy(caller.account_id, [caller.arn, *admins])
        else:
            self._check_lockout(caller, policy, bypass_policy_lockout_safety_check, self._config.key_arn(kid, caller.account_id))
        if custom_key_store_id is None:
            record = self._new_record(caller, key_spec, usage, policy, description, "CUSTOMER", tags, kid, origin)
            self._note(record.arn)
            return metadata(record)
        if self._stores is None:
            raise UnsupportedOperationException("This KMS has no custom key stores.")
        store = self._stores.store_for_new_key(caller, custom_key_store_id)
        self._stores.generate(store, kid)  # inside the token first: a record never names material that is not there
        try:
            record = self._new_record(caller, key_spec, usage, policy, description, "CUSTOMER", tags, kid, origin,
                                      store.store_id)
        except BaseException:
            self._stores.discard(store, kid)
            raise
        self._note(record.arn)
        return metadata(record, cluster_id=store.cluster_id)

    def _check_lockout(self, caller: Caller, policy: str, bypass: bool, key_arn: str) -> None:
        """Parse the policy strictly; unless bypassed, it must let the caller put the key policy again."""
        doc = parse_key_policy(policy)
        if bypass:
            return
        request = Request(caller.principal, "kms:PutKeyPolicy", key_arn, self._authz.context(caller, None, None, {
            "kms:bypasspolicylockoutsafetycheck": _flag(False)}))
        if not decide(request, identity=caller.identity, resource=doc, resource_account=key_arn.split(":")[4],
                      resource_must_allow=True).allowed:
            raise MalformedPolicyDocumentException(
                "The new key policy will not allow you to update the key policy in the future."
            )

    def describe_key(self, caller: Caller, key_id: str) -> KeyMetadata:
        r = self._authz.usable(caller, key_id, "DescribeKey")
        if r.custom_key_store_id is None or self._stores is None:
            return metadata(r)
        return metadata(r, self._authz.state(r), self._stores.cluster_id(r))

    def list_keys(self, caller: Caller) -> list[tuple[str, str]]:
        """(key id, key ARN) of every key in the caller's account (the identity policy decides ListKeys)."""
        self._authz.authorize_account(caller, "ListKeys")
        return [(r.key_id, r.arn) for r in self._registry.keys()
                if r.account_id == caller.account_id and r.key_manager != "SERVICE" and self._registry.due(r)]

    def _change(self, caller: Caller, key_id: str, op: str, change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
        # AWS-managed keys: their policy allows no changes, so authorization in usable() refuses them
        record = self._authz.usable(caller, key_id, op, aliases=False)
        return self._registry.update_key(record.key_id, change)

    def update_key_description(self, caller: Caller, key_id: str, description: str) -> None:
        self._change(caller, key_id, "UpdateKeyDescription", lambda r: replace(r, description=description))

    def enable_key(self, caller: Caller, key_id: str) -> None:
        self._change(caller, key_id, "EnableKey", lambda r: replace(r, state=lifecycle.ENABLED))

    def disable_key(self, caller: Caller, key_id: str) -> None:
        self._change(caller, key_id, "DisableKey", lambda r: replace(r, state=lifecycle.DISABLED))

    def schedule_key_deletion(self, caller: Caller, key_id: str, pending_window_in_days: int = 30) -> DeletionScheduled:
        if not 7 <= pending_window_in_days <= 30:
            raise member_error("pendingWindowInDays", "have value between 7 and 30", pending_window_in_days)
        when = self._clock() + pending_window_in_days * DAY
        r = self._change(caller, key_id, "ScheduleKeyDeletion", lambda r: replace(
            r, state=lifecycle.PENDING_DELETION, deletion_date=when, pending_window=pending_window_in_days))
        return DeletionScheduled(r.arn, when, r.state, pending_window_in_days)

    def cancel_key_deletion(self, caller: Caller, key_id: str) -> str:
        r = self._change(caller, key_id, "CancelKeyDeletion", lambda r: replace(  # imported material gone: PendingImport
            r, state=lifecycle.DISABLED if r.materials or r.custom_key_store_id else lifecycle.PENDING_IMPORT,
            deletion_date=None, pending_window=None))
        return r.arn

    # rotation -----------------------------------------------------------------------------------
    def _rotatable(self, r: KeyRecord) -> None:
        if r.key_spec != keys.SYMMETRIC or r.origin != "AWS_KMS":
            raise UnsupportedOperationException(
                f"{r.arn} origin is {r.origin} and key spec is {r.key_spec}, which is not valid for this operation."
            )

    def enable_key_rotation(self, caller: Caller, key_id: str, rotation_period_in_days: int = 365) -> None:
        if not 90 <= rotation_period_in_days <= 2560:
            raise member_error("rotationPeriodInDays", "have value between 90 and 2560", rotation_period_in_days)
        self._rotatable(self._authz.lookup(caller, key_id, aliases=False))
        now = self._clock()
        self._change(caller, key_id, "EnableKeyRotation", lambda r: replace(
            r, rotation_enabled=True, rotation_period=rotation_period_in_days,
            next_rotation=now + rotation_period_in_days * DAY))

    def disable_key_rotation(self, caller: Caller, key_id: str) -> None:
        self._rotatable(self._authz.lookup(caller, key_id, aliases=False))
        self._change(caller, key_id, "DisableKeyRotation", lambda r: replace(
            r, rotation_enabled=False, rotation_period=None, next_rotation=None))

    def get_key_rotation_status(self, caller: Caller, key_id: str) -> RotationStatus:
        r = self._authz.usable(caller, key_id, "GetKeyRotationStatus", aliases=False)
        self._rotatable(r)
        return RotationStatus(r.arn, r.rotation_enabled, r.rotation_period, r.next_rotation, r.on_demand_started)

    def rotate_key_on_demand(self, caller: Caller, key_id: str) -> str:
        r = self._authz.usable(caller, key_id, "RotateKeyOnDemand", aliases=False)
        self._rotatable(r)
        if sum(1 for rot in r.rotations if rot[2] == "ON_DEMAND") >= ON_DEMAND_LIMIT:
            raise LimitExceededException(f"{r.arn} has reached the limit of {ON_DEMAND_LIMIT} on-demand rotations.")
        now = self._clock()
        return self._registry.update_key(r.key_id, lambda cur: replace(
            self._registry.rotated(cur, "ON_DEMAND", now), on_demand_started=cur.on_demand_started or now)).arn

    def list_key_rotations(self, caller: Caller, key_id: str) -> list[Rotation]:
        r = self._authz.usable(caller, key_id, "ListKeyRotations", aliases=False)
        self._rotatable(r)
        return [Rotation(r.arn, r.material_id(v), date, kind) for v, date, kind in r.rotations]

    # aliases ------------------------------------------------------------------------------------
    def _check_alias_name(self, alias_name: str) -> None:
        if not _ALIAS_RE.match(alias_name):
            raise member_error("aliasName", "satisfy regular expression pattern: ^alias/[a-zA-Z0-9:/_-]+$", alias_name)
        if alias_name.startswith("alias/aws/"):
            raise InvalidAliasNameException("Your alias name must not begin with alias/aws/.")

    def create_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self._check_alias_name(alias_name)
        target = self._authz.usable(caller, target_key_id, "CreateAlias", aliases=False)
        if target.key_manager != "CUSTOMER":
            raise UnsupportedOperationException(f"{target.arn} is an AWS managed key; its aliases cannot be changed.")
        entry = self._config.alias_entry(caller.account_id, alias_name)
        if self._registry.alias(entry) is not None:
            raise AlreadyExistsException(
                f"An alias with the name {self._config.alias_arn(alias_name, caller.account_id)} already exists")
        now = self._clock()
        self._registry.put_alias(AliasRecord(entry, target.key_id, now, now), create=True)

    def update_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self._check_alias_name(alias_name)
        alias = self._registry.alias(self._config.alias_entry(caller.account_id, alias_name))
        if alias is None:
            raise NotFoundException(f"Alias {self._config.alias_arn(alias_name, caller.account_id)} is not found.")
        old = self._authz.lookup(caller, alias.target)
        self._authz.authorize(caller, old, "UpdateAlias")
        new = self._authz.usable(caller, target_key_id, "UpdateAlias", aliases=False)
        self._authz.check_state("CreateAlias", new)  # note [10]: the new target must not be pending deletion
        if (old.key_spec, old.key_usage) != (new.key_spec, new.key_usage):
            raise ValidationException("The new target key must have the same key spec and key usage as the current one.")
        self._registry.put_alias(replace(alias, target=new.key_id, updated=self._clock()), create=False)

    def delete_alias(self, caller: Caller, alias_name: str) -> None:
        if alias_name.startswith("alias/aws/"):
            raise InvalidAliasNameException("Your alias name must not begin with alias/aws/.")
        entry = self._config.alias_entry(caller.account_id, alias_name)
        alias = self._registry.alias(entry)
        if alias is None:
            raise NotFoundException(f"Alias {self._config.alias_arn(alias_name, caller.account_id)} is not found.")
        self._authz.authorize(caller, self._authz.lookup(caller, alias.target), "DeleteAlias")
        self._registry.remove_alias(entry)

    def list_aliases(self, caller: Caller, key_id: str | None = None) -> list[AliasEntry]:
        self._authz.authorize_account(caller, "ListAliases")
        target = self._authz.lookup(caller, key_id, aliases=False).key_id if key_id else None
        account = caller.account_id
        out = []
        for a in self._registry.aliases():
            owner, name = self._config.alias_owner(a.name)
            if owner == account and (target is None or a.target == target):
                out.append(AliasEntry(name, self._config.alias_arn(name, account), a.target, a.created, a.updated))
        if target is None:  # AWS lists the predefined AWS-managed aliases even before their key exists
            have = {a.alias_name for a in out}
            out += [AliasEntry(n, self._config.alias_arn(n, account), None, None, None)
                    for n in ("alias/aws/s3",) if n not in have]
        return sorted(out, key=lambda a: a.alias_name)

    # policies -----------------------------------------------------------------------------------
    def put_key_policy(self, caller: Caller, key_id: str, policy: str, policy_name: str = "default",
                       bypass_policy_lockout_safety_check: bool = False) -> None:
        if policy_name != "default":
            raise ValidationException("The only valid policy name is default.")
        r = self._authz.usable(caller, key_id, "PutKeyPolicy", aliases=False, extra={
            "kms:bypasspolicylockoutsafetycheck": _flag(bypass_policy_lockout_safety_check)})
        if r.key_manager != "CUSTOMER":
            raise UnsupportedOperationException(f"{r.arn} is an AWS managed key; its policy cannot be changed.")
        self._check_lockout(caller, policy, bypass_policy_lockout_safety_check, r.arn)
        self._registry.update_key(r.key_id, lambda cur: replace(cur, policy=policy))

    def get_key_policy(self, caller: Caller, key_id: str, policy_name: str = "default") -> str:
        r = self._authz.usable(caller, key_id, "GetKeyPolicy", aliases=False)
        if policy_name != "default":
            raise NotFoundException(f"No such policy exists: {policy_name}")
        return r.policy

    def list_key_policies(self, caller: Caller, key_id: str) -> list[str]:
        self._authz.usable(caller, key_id, "ListKeyPolicies", aliases=False)
        return ["default"]

    # grants -------------------------------------------------------------------------------------
    def create_grant(self, caller: Caller, key_id: str, grantee_principal: str, operations: Iterable[str],
                     retiring_principal: str | None = None, constraints: Mapping[str, Mapping[str, str]] | None = None,
                     name: str | None = None) -> tuple[str, str]:
        ops = tuple(operations)
        bad = [o for o in ops if o not in GRANT_OPERATIONS]
        if not ops or bad:
            raise ValidationException(f"Invalid grant operations: {bad or 'none given'}")
        for p in (grantee_principal, retiring_principal):
            if p is not None and not p.startswith("arn:aws:iam::"):
                raise InvalidArnException(f"Invalid principal {p}")
        constraints = constraints or {}
        if set(constraints) - {"EncryptionContextEquals", "EncryptionContextSubset"}:
            raise ValidationException("Unknown grant constraint.")
        extra = {"kms:grantoperations": ops, "kms:granteeprincipal": (grantee_principal,),
                 "kms:grantisforawsresource": _flag(caller.via_service is not None)}
        if retiring_principal is not None:
            extra["kms:retiringprincipal"] = (retiring_principal,)
        if constraints:
            extra["kms:grantconstrainttype"] = tuple(sorted(constraints))
        r = self._authz.usable(caller, key_id, "CreateGrant", aliases=False, extra=extra)
        for g in r.grants:  # AWS: same name and parameters -> the same grant comes back
            if name and g.get("Name") == name and g["GranteePrincipal"] == grantee_principal and tuple(g["Operations"]) == ops:
                return g["GrantId"], g["Token"]
        grant = Grant(
            grant_id=self._rand(32).hex(), token=self._rand(32).hex(), key_id=r.key_id, grantee=grantee_principal,
            operations=ops, created=self._clock(), issuing_account=caller.account_root, name=name,
            retiring=retiring_principal, context_equals=constraints.get("EncryptionContextEquals"),
            context_subset=constraints.get("EncryptionContextSubset"),
        )
        if len(r.grants) >= 50000:
            raise LimitExceededException("Too many grants for this key.")
        self._registry.update_key(r.key_id, lambda cur: replace(cur, grants=cur.grants + (grant.to_json(),)))
        return grant.grant_id, grant.token

    def list_grants(self, caller: Caller, key_id: str, grant_id: str | None = None,
                    grantee_principal: str | None = None) -> list[Grant]:
        r = self._authz.usable(caller, key_id, "ListGrants", aliases=False,
                               extra={"kms:grantisforawsresource": _flag(caller.via_service is not None)})
        grants = [Grant.from_json(g) for g in r.grants]
        if grant_id is not None:
            grants = [g for g in grants if g.grant_id == grant_id]
        if grantee_principal is not None:
            grants = [g for g in grants if g.grantee == grantee_principal]
        return grants

    def _drop_grant(self, r: KeyRecord, grant_id: str) -> None:
        self._registry.update_key(
            r.key_id, lambda cur: replace(cur, grants=tuple(g for g in cur.grants if g["GrantId"] != grant_id))
        )

    def retire_grant(self, caller: Caller, grant_token: str | None = None, key_id: str | None = None,
                     grant_id: str | None = None) -> None:
        """Retire by token, or by key and grant id; the retiring principal or the grantee (with RetireGrant) may."""
        if grant_token is None and (key_id is None or grant_id is None):
            raise ValidationException("Specify a grant token, or a key id and a grant id.")
        candidates = [self._authz.lookup(caller, key_id, aliases=False)] if key_id else self._registry.keys()
        for r in candidates:
            for g in map(Grant.from_json, r.grants):
                if (grant_token and hmac_eq(g.token, grant_token)) or (grant_id and g.grant_id == grant_id):
                    if caller.arn != g.retiring and not (caller.arn == g.grantee and "RetireGrant" in g.operations):
                        self._authz.authorize(caller, r, "RetireGrant")
                    self._drop_grant(r, g.grant_id)
                    return
        if grant_token is not None and key_id is None:
            raise InvalidGrantTokenException()
        raise InvalidGrantIdException()

    def revoke_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        r = self._authz.usable(caller, key_id, "RevokeGrant", aliases=False,
                               extra={"kms:grantisforawsresource": _flag(caller.via_service is not None)})
        if not any(g["GrantId"] == grant_id for g in r.grants):
            raise InvalidGrantIdException()
        self._drop_grant(r, grant_id)

    # tags ---------------------------------------------------------------------------------------
    @staticmethod
    def _check_tags(tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            if not 1 <= len(k) <= 128 or len(v) > 256 or k.startswith("aws:"):
                raise TagException(f"Tag {k!r} is not valid.")

    def tag_resource(self, caller: Caller, key_id: str, tags: Mapping[str, str]) -> None:
        self._check_tags(tags)
        self._change(caller, key_id, "TagResource", lambda r: replace(r, tags=tuple(sorted({**dict(r.tags), **tags}.items()))))

    def untag_resource(self, caller: Caller, key_id: str, tag_keys: Iterable[str]) -> None:
        drop = set(tag_keys)
        self._change(caller, key_id, "UntagResource", lambda r: replace(r, tags=tuple(t for t in r.tags if t[0] not in drop)))

    def list_resource_tags(self, caller: Caller, key_id: str) -> dict[str, str]:
        return dict(self._authz.usable(caller, key_id, "ListResourceTags", aliases=False).tags)

    # the data path's own keys -------------------------------------------------------------------
    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str:
        """The AWS-managed key behind `alias` (created on first use), as S3 uses for SSE-KMS without a key id."""
        with self._lock:
            entry = self._config.alias_entry(caller.account_id, alias)
            found = self._registry.alias(entry)
            if found is None:
                service = alias.split("/")[2]
                record = self._new_record(
                    caller, keys.SYMMETRIC, keys.ENCRYPT_DECRYPT,
                    aws_managed_policy(caller.account_id, f"{service}.{self._config.region}.amazonaws.com"),
                    f"Default key that protects my {service.upper()} objects when no other key is defined", "AWS",
                )
                now = self._clock()
                try:
                    self._registry.put_alias(AliasRecord(entry, record.key_id, now, now), create=True)
                except AlreadyExistsException:  # another proxy sharing the keystore made it first: use theirs
                    self._registry.remove_key(record.key_id)
                    winner = self._registry.alias(entry)
                    if winner is None:
                        raise
                    return self._config.key_arn(winner.target)
                self._registry.update_key(record.key_id, lambda r: replace(
                    r, rotation_enabled=True, rotation_period=365, next_rotation=now + 365 * DAY))
                return record.arn
            return self._config.key_arn(found.target, caller.account_id)

    def service_key(self) -> str:
        """The proxy's own key for SSE-S3: invisible to API callers, used only with `service_caller`.

        Every proxy and worker on a keystore must agree on it, also when several start together on an
        empty one: it is made under an id derived from the account, so the keystore's create-if-absent
        lets exactly one writer make it and every other one reads theirs."""
        if self._service_arn is not None:
            return self._service_arn
        with self._lock:
            if self._service_arn is None:
                self._service_arn = self._find_or_make_service_key()
            return self._service_arn

    def _find_or_make_service_key(self) -> str:
        found = [r for r in self._registry.keys() if r.key_manager == "SERVICE"]
        if found:  # the oldest (keystores made before the fixed id may hold more than one; any of them unwraps)
            return found[0].arn
        kid = str(uuid.uuid5(_SERVICE_KEY_NAMESPACE, self._config.account_id))
        try:
            return self._new_record(service_caller(self._config.account_id), keys.SYMMETRIC, keys.ENCRYPT_DECRYPT,
                                    '{"Version":"2012-10-17","Statement":[]}', "s3proxy SSE-S3 key", "SERVICE",
                                    kid=kid).arn
        except KeystoreConflict:  # another process sharing the keystore made it first: theirs is the one
            winner = self._registry.key(kid)
            if winner is None or winner.key_manager != "SERVICE":
                raise
            return winner.arn

    def is_service_key(self, key_arn: str) -> bool:
        """Whether `key_arn` is one of the proxy's own SSE-S3 keys (any of them: a keystore made before the
        service key had a fixed id may hold several, made by replicas that started together)."""
        record = self._registry.key(key_arn.rsplit("/", 1)[-1])
        return record is not None and record.key_manager == "SERVICE" and hmac_eq(record.arn, key_arn)


# the service key's id: uuid5 of the account in this namespace (fixed, so concurrent creators collide)
_SERVICE_KEY_NAMESPACE = uuid.UUID("6b1f3e0a-8c52-4d0e-9a57-3f2c1d9e7b41")


def hmac_eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
