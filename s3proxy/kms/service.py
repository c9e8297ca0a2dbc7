"""The key service: one method per KMS operation, taking the caller first and Python values.

Knows nothing of HTTP or S3. Key lifecycle (create, enable/disable, deletion after a waiting
period, rotation), aliases, policies, grants and tags live here; the cryptographic operations and
the DataKeySource seam come from `CryptoOps`. Thread-safe: records are cached and written with
compare-and-swap; the hot data-key path reads only the cache and appends one audit line.
"""

from __future__ import annotations

import hmac
import os
import re
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from . import keys, lifecycle
from .audit import AuditSink, FileAuditSink
from .caller import Caller, service_caller
from .core import Config, operation
from .cryptoops import CryptoOps
from .errors import (
    AlreadyExistsException, InvalidAliasNameException, InvalidArnException, InvalidGrantIdException,
    InvalidGrantTokenException, LimitExceededException, MalformedPolicyDocumentException, NotFoundException,
    TagException, UnsupportedOperationException, ValidationException,
)
from .keystore.base import Keystore
from .keystore.sqlite import SqliteKeystore
from .policy import GRANT_OPERATIONS, Grant, Request, aws_managed_policy, default_policy, evaluate, parse_policy
from .store import AliasRecord, KeyRecord, KeyRecords
from .wrapping import Sealer, load_root_key

DAY = 86400.0
ON_DEMAND_LIMIT = 10  # per key, as the KMS API reference states (the developer guide now says 25)
_ALIAS_RE = re.compile(r"^alias/[a-zA-Z0-9:/_-]{1,250}$")


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


def metadata(r: KeyRecord) -> KeyMetadata:
    info = keys.spec_info(r.key_spec, r.key_usage)
    return KeyMetadata(
        r.key_id, r.arn, r.account_id, r.created, r.state == lifecycle.ENABLED, r.description, r.key_usage, r.state,
        r.key_spec, r.origin, r.key_manager, info.encryption, info.signing, info.mac, r.deletion_date, r.pending_window,
        r.material_id(),
    )


class KeyService(CryptoOps):
    @classmethod
    def open(
        cls, data_dir: Path, root_key_file: Path | None = None, *, region: str = "us-east-1",
        account_id: str = "000000000000", administrators: Iterable[str] = (),
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
        audit: AuditSink | None = None, keystore: Keystore | None = None,
    ) -> "KeyService":
        """The service over `<data_dir>/kms/keystore.sqlite3`, auditing to `<data_dir>/kms/audit.log`."""
        data_dir = Path(data_dir)
        root_path = Path(root_key_file) if root_key_file else data_dir / "root.key"
        root = load_root_key(root_path, rand=rand)
        store = keystore or SqliteKeystore(data_dir / "kms" / "keystore.sqlite3")
        sink = audit or FileAuditSink(data_dir / "kms" / "audit.log")
        try:
            return cls.create(store, sink, root_key=root, region=region, account_id=account_id,
                              administrators=administrators, clock=clock, rand=rand,
                              root_reload=lambda: load_root_key(root_path, create=False))
        except BaseException:  # e.g. a root key that does not match: leave no handle open behind
            for resource in (store, sink):
                close = getattr(resource, "close", None)
                if close is not None:
                    close()
            raise

    @classmethod
    def create(
        cls, keystore: Keystore, audit: AuditSink, *, root_key: bytes, region: str = "us-east-1",
        account_id: str = "000000000000", administrators: Iterable[str] = (),
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
        root_reload: Callable[[], bytes] | None = None,
    ) -> "KeyService":
        records = KeyRecords(keystore, Sealer(root_key, rand=rand, reload=root_reload))
        service = cls(records, audit, Config(region, account_id, tuple(administrators)), clock=clock, rand=rand)
        service._keystore = keystore
        service.purge_due()
        return service

    def close(self) -> None:
        close = getattr(self.audit, "close", None)
        if close:
            close()
        store = getattr(self, "_keystore", None)
        if store is not None:
            store.close()

    def purge_due(self) -> int:
        """Delete every key whose waiting period has ended (also done lazily on each access)."""
        before = len(self.records.keys())
        for r in self.records.keys():
            self.due(r)
        return before - len(self.records.keys())

    # keys ---------------------------------------------------------------------------------------
    def _new_record(self, caller: Caller, key_spec: str, key_usage: str, policy: str, description: str,
                    key_manager: str, tags: Mapping[str, str] | None = None) -> KeyRecord:
        kid = str(uuid.UUID(bytes=self.rand(16), version=4))
        record = KeyRecord(
            key_id=kid, arn=self.key_arn(kid), account_id=self.config.account_id, created=self.clock(),
            key_spec=key_spec, key_usage=key_usage, state=lifecycle.ENABLED, policy=policy,
            materials=(keys.generate_material(key_spec, self.rand),), description=description,
            key_manager=key_manager, tags=tuple(sorted((tags or {}).items())),
        )
        self.records.add_key(record)
        return record

    @operation("CreateKey")
    def create_key(self, caller: Caller, *, description: str = "", key_usage: str | None = None,
                   key_spec: str = keys.SYMMETRIC, policy: str | None = None, tags: Mapping[str, str] | None = None,
                   origin: str = "AWS_KMS", bypass_policy_lockout_safety_check: bool = False) -> KeyMetadata:
        usage = key_usage or keys.default_usage(key_spec)
        keys.spec_info(key_spec, usage)
        if origin != "AWS_KMS":
            raise UnsupportedOperationException(f"Origin {origin} is not supported.")
        if len(description) > 8192:
            raise ValidationException("Description must be at most 8192 characters.")
        self._check_tags(tags or {})
        if policy is None:
            policy = default_policy(caller.account_id, [caller.arn, *self.admin_arns()])
        else:
            self._check_lockout(caller, policy, bypass_policy_lockout_safety_check)
        record = self._new_record(caller, key_spec, usage, policy, description, "CUSTOMER", tags)
        self._call.resources.append(record.arn)
        return metadata(record)

    def _check_lockout(self, caller: Caller, policy: str, bypass: bool) -> None:
        doc = parse_policy(policy)
        if not bypass and evaluate(doc, Request(caller, "kms:PutKeyPolicy")) != "Allow":
            raise MalformedPolicyDocumentException(
                "The new key policy will not allow you to update the key policy in the future."
            )

    @operation("DescribeKey", read_only=True)
    def describe_key(self, caller: Caller, key_id: str) -> KeyMetadata:
        return metadata(self.usable(caller, key_id, "DescribeKey"))

    @operation("ListKeys", read_only=True)
    def list_keys(self, caller: Caller) -> list[tuple[str, str]]:
        """(key id, key ARN) of every key in the account (IAM decides ListKeys in AWS; here every user may)."""
        return [(r.key_id, r.arn) for r in self.records.keys() if r.key_manager != "SERVICE" and self.due(r)]

    def _change(self, caller: Caller, key_id: str, op: str, change: Callable[[KeyRecord], KeyRecord]) -> KeyRecord:
        # AWS-managed keys: their policy allows no changes, so authorization in usable() refuses them
        record = self.usable(caller, key_id, op, aliases=False)
        return self.records.update_key(record.key_id, change)

    @operation("UpdateKeyDescription")
    def update_key_description(self, caller: Caller, key_id: str, description: str) -> None:
        self._change(caller, key_id, "UpdateKeyDescription", lambda r: replace(r, description=description))

    @operation("EnableKey")
    def enable_key(self, caller: Caller, key_id: str) -> None:
        self._change(caller, key_id, "EnableKey", lambda r: replace(r, state=lifecycle.ENABLED))

    @operation("DisableKey")
    def disable_key(self, caller: Caller, key_id: str) -> None:
        self._change(caller, key_id, "DisableKey", lambda r: replace(r, state=lifecycle.DISABLED))

    @operation("ScheduleKeyDeletion")
    def schedule_key_deletion(self, caller: Caller, key_id: str, pending_window_in_days: int = 30) -> DeletionScheduled:
        if not 7 <= pending_window_in_days <= 30:
            raise ValidationException(
                f"1 validation error detected: Value '{pending_window_in_days}' at 'pendingWindowInDays' failed to "
                "satisfy constraint: Member must have value between 7 and 30"
            )
        when = self.clock() + pending_window_in_days * DAY
        r = self._change(caller, key_id, "ScheduleKeyDeletion", lambda r: replace(
            r, state=lifecycle.PENDING_DELETION, deletion_date=when, pending_window=pending_window_in_days))
        return DeletionScheduled(r.arn, when, r.state, pending_window_in_days)

    @operation("CancelKeyDeletion")
    def cancel_key_deletion(self, caller: Caller, key_id: str) -> str:
        r = self._change(caller, key_id, "CancelKeyDeletion", lambda r: replace(
            r, state=lifecycle.DISABLED, deletion_date=None, pending_window=None))
        return r.arn

    # rotation -----------------------------------------------------------------------------------
    def _rotatable(self, r: KeyRecord) -> None:
        if r.key_spec != keys.SYMMETRIC:
            raise UnsupportedOperationException(f"{r.arn} origin is {r.origin} and key spec is {r.key_spec}, which is not valid for this operation.")

    @operation("EnableKeyRotation")
    def enable_key_rotation(self, caller: Caller, key_id: str, rotation_period_in_days: int = 365) -> None:
        if not 90 <= rotation_period_in_days <= 2560:
            raise ValidationException(
                f"1 validation error detected: Value '{rotation_period_in_days}' at 'rotationPeriodInDays' failed to "
                "satisfy constraint: Member must have value between 90 and 2560"
            )
        self._rotatable(self.lookup(caller, key_id, aliases=False))
        now = self.clock()
        self._change(caller, key_id, "EnableKeyRotation", lambda r: replace(
            r, rotation_enabled=True, rotation_period=rotation_period_in_days,
            next_rotation=now + rotation_period_in_days * DAY))

    @operation("DisableKeyRotation")
    def disable_key_rotation(self, caller: Caller, key_id: str) -> None:
        self._rotatable(self.lookup(caller, key_id, aliases=False))
        self._change(caller, key_id, "DisableKeyRotation", lambda r: replace(
            r, rotation_enabled=False, rotation_period=None, next_rotation=None))

    @operation("GetKeyRotationStatus", read_only=True)
    def get_key_rotation_status(self, caller: Caller, key_id: str) -> RotationStatus:
        r = self.usable(caller, key_id, "GetKeyRotationStatus", aliases=False)
        self._rotatable(r)
        return RotationStatus(r.arn, r.rotation_enabled, r.rotation_period, r.next_rotation, r.on_demand_started)

    @operation("RotateKeyOnDemand")
    def rotate_key_on_demand(self, caller: Caller, key_id: str) -> str:
        r = self.usable(caller, key_id, "RotateKeyOnDemand", aliases=False)
        self._rotatable(r)
        if sum(1 for rot in r.rotations if rot[2] == "ON_DEMAND") >= ON_DEMAND_LIMIT:
            raise LimitExceededException(f"{r.arn} has reached the limit of {ON_DEMAND_LIMIT} on-demand rotations.")
        now = self.clock()
        return self.records.update_key(r.key_id, lambda cur: replace(
            self._rotated(cur, "ON_DEMAND", now), on_demand_started=cur.on_demand_started or now)).arn

    @operation("ListKeyRotations", read_only=True)
    def list_key_rotations(self, caller: Caller, key_id: str) -> list[Rotation]:
        r = self.usable(caller, key_id, "ListKeyRotations", aliases=False)
        self._rotatable(r)
        return [Rotation(r.arn, r.material_id(v), date, kind) for v, date, kind in r.rotations]

    # aliases ------------------------------------------------------------------------------------
    def _check_alias_name(self, alias_name: str) -> None:
        if not _ALIAS_RE.match(alias_name):
            raise ValidationException(
                f"1 validation error detected: Value '{alias_name}' at 'aliasName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9:/_-]+$"
            )
        if alias_name.startswith("alias/aws/"):
            raise InvalidAliasNameException("Your alias name must not begin with alias/aws/.")

    @operation("CreateAlias")
    def create_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self._check_alias_name(alias_name)
        target = self.usable(caller, target_key_id, "CreateAlias", aliases=False)
        if target.key_manager != "CUSTOMER":
            raise UnsupportedOperationException(f"{target.arn} is an AWS managed key; its aliases cannot be changed.")
        if self.records.alias(alias_name) is not None:
            raise AlreadyExistsException(f"An alias with the name {self.alias_arn(alias_name)} already exists")
        now = self.clock()
        self.records.put_alias(AliasRecord(alias_name, target.key_id, now, now), create=True)

    @operation("UpdateAlias")
    def update_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self._check_alias_name(alias_name)
        alias = self.records.alias(alias_name)
        if alias is None:
            raise NotFoundException(f"Alias {self.alias_arn(alias_name)} is not found.")
        old = self.lookup(caller, alias.target)
        self.authorize(caller, old, "UpdateAlias")
        new = self.usable(caller, target_key_id, "UpdateAlias", aliases=False)
        lifecycle.check_state("CreateAlias", new.state, new.arn)  # note [10]: the new target must not be pending deletion
        if (old.key_spec, old.key_usage) != (new.key_spec, new.key_usage):
            raise ValidationException("The new target key must have the same key spec and key usage as the current one.")
        self.records.put_alias(replace(alias, target=new.key_id, updated=self.clock()), create=False)

    @operation("DeleteAlias")
    def delete_alias(self, caller: Caller, alias_name: str) -> None:
        if alias_name.startswith("alias/aws/"):
            raise InvalidAliasNameException("Your alias name must not begin with alias/aws/.")
        alias = self.records.alias(alias_name)
        if alias is None:
            raise NotFoundException(f"Alias {self.alias_arn(alias_name)} is not found.")
        self.authorize(caller, self.lookup(caller, alias.target), "DeleteAlias")
        self.records.remove_alias(alias_name)

    @operation("ListAliases", read_only=True)
    def list_aliases(self, caller: Caller, key_id: str | None = None) -> list[AliasEntry]:
        target = self.lookup(caller, key_id, aliases=False).key_id if key_id else None
        out = [AliasEntry(a.name, self.alias_arn(a.name), a.target, a.created, a.updated)
               for a in self.records.aliases() if target is None or a.target == target]
        if target is None:  # AWS lists the predefined AWS-managed aliases even before their key exists
            have = {a.alias_name for a in out}
            out += [AliasEntry(n, self.alias_arn(n), None, None, None) for n in ("alias/aws/s3",) if n not in have]
        return sorted(out, key=lambda a: a.alias_name)

    # policies -----------------------------------------------------------------------------------
    @operation("PutKeyPolicy")
    def put_key_policy(self, caller: Caller, key_id: str, policy: str, policy_name: str = "default",
                       bypass_policy_lockout_safety_check: bool = False) -> None:
        if policy_name != "default":
            raise ValidationException("The only valid policy name is default.")
        r = self.usable(caller, key_id, "PutKeyPolicy", aliases=False)
        if r.key_manager != "CUSTOMER":
            raise UnsupportedOperationException(f"{r.arn} is an AWS managed key; its policy cannot be changed.")
        self._check_lockout(caller, policy, bypass_policy_lockout_safety_check)
        self.records.update_key(r.key_id, lambda cur: replace(cur, policy=policy))

    @operation("GetKeyPolicy", read_only=True)
    def get_key_policy(self, caller: Caller, key_id: str, policy_name: str = "default") -> str:
        r = self.usable(caller, key_id, "GetKeyPolicy", aliases=False)
        if policy_name != "default":
            raise NotFoundException(f"No such policy exists: {policy_name}")
        return r.policy

    @operation("ListKeyPolicies", read_only=True)
    def list_key_policies(self, caller: Caller, key_id: str) -> list[str]:
        self.usable(caller, key_id, "ListKeyPolicies", aliases=False)
        return ["default"]

    # grants -------------------------------------------------------------------------------------
    @operation("CreateGrant")
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
        r = self.usable(caller, key_id, "CreateGrant", aliases=False)
        constraints = constraints or {}
        if set(constraints) - {"EncryptionContextEquals", "EncryptionContextSubset"}:
            raise ValidationException("Unknown grant constraint.")
        for g in r.grants:  # AWS: same name and parameters -> the same grant comes back
            if name and g.get("Name") == name and g["GranteePrincipal"] == grantee_principal and tuple(g["Operations"]) == ops:
                return g["GrantId"], g["Token"]
        grant = Grant(
            grant_id=self.rand(32).hex(), token=self.rand(32).hex(), key_id=r.key_id, grantee=grantee_principal,
            operations=ops, created=self.clock(), issuing_account=caller.account_root, name=name,
            retiring=retiring_principal, context_equals=constraints.get("EncryptionContextEquals"),
            context_subset=constraints.get("EncryptionContextSubset"),
        )
        if len(r.grants) >= 50000:
            raise LimitExceededException("Too many grants for this key.")
        self.records.update_key(r.key_id, lambda cur: replace(cur, grants=cur.grants + (grant.to_json(),)))
        return grant.grant_id, grant.token

    @operation("ListGrants", read_only=True)
    def list_grants(self, caller: Caller, key_id: str, grant_id: str | None = None,
                    grantee_principal: str | None = None) -> list[Grant]:
        r = self.usable(caller, key_id, "ListGrants", aliases=False)
        grants = [Grant.from_json(g) for g in r.grants]
        if grant_id is not None:
            grants = [g for g in grants if g.grant_id == grant_id]
        if grantee_principal is not None:
            grants = [g for g in grants if g.grantee == grantee_principal]
        return grants

    def _drop_grant(self, r: KeyRecord, grant_id: str) -> None:
        self.records.update_key(r.key_id, lambda cur: replace(cur, grants=tuple(g for g in cur.grants if g["GrantId"] != grant_id)))

    @operation("RetireGrant")
    def retire_grant(self, caller: Caller, grant_token: str | None = None, key_id: str | None = None,
                     grant_id: str | None = None) -> None:
        """Retire by token, or by key and grant id; the retiring principal or the grantee (with RetireGrant) may."""
        if grant_token is None and (key_id is None or grant_id is None):
            raise ValidationException("Specify a grant token, or a key id and a grant id.")
        candidates = [self.lookup(caller, key_id, aliases=False)] if key_id else self.records.keys()
        for r in candidates:
            for g in map(Grant.from_json, r.grants):
                if (grant_token and hmac_eq(g.token, grant_token)) or (grant_id and g.grant_id == grant_id):
                    if caller.arn != g.retiring and not (caller.arn == g.grantee and "RetireGrant" in g.operations):
                        self.authorize(caller, r, "RetireGrant")
                    self._drop_grant(r, g.grant_id)
                    return
        if grant_token is not None and key_id is None:
            raise InvalidGrantTokenException()
        raise InvalidGrantIdException()

    @operation("RevokeGrant")
    def revoke_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        r = self.usable(caller, key_id, "RevokeGrant", aliases=False)
        if not any(g["GrantId"] == grant_id for g in r.grants):
            raise InvalidGrantIdException()
        self._drop_grant(r, grant_id)

    # tags ---------------------------------------------------------------------------------------
    @staticmethod
    def _check_tags(tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            if not 1 <= len(k) <= 128 or len(v) > 256 or k.startswith("aws:"):
                raise TagException(f"Tag {k!r} is not valid.")

    @operation("TagResource")
    def tag_resource(self, caller: Caller, key_id: str, tags: Mapping[str, str]) -> None:
        self._check_tags(tags)
        self._change(caller, key_id, "TagResource", lambda r: replace(r, tags=tuple(sorted({**dict(r.tags), **tags}.items()))))

    @operation("UntagResource")
    def untag_resource(self, caller: Caller, key_id: str, tag_keys: Iterable[str]) -> None:
        drop = set(tag_keys)
        self._change(caller, key_id, "UntagResource", lambda r: replace(r, tags=tuple(t for t in r.tags if t[0] not in drop)))

    @operation("ListResourceTags", read_only=True)
    def list_resource_tags(self, caller: Caller, key_id: str) -> dict[str, str]:
        return dict(self.usable(caller, key_id, "ListResourceTags", aliases=False).tags)

    # the data path's own keys -------------------------------------------------------------------
    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str:
        """The AWS-managed key behind `alias` (created on first use), as S3 uses for SSE-KMS without a key id."""
        with self._lock:
            found = self.records.alias(alias)
            if found is None:
                service = alias.split("/")[2]
                record = self._new_record(
                    caller, keys.SYMMETRIC, keys.ENCRYPT_DECRYPT,
                    aws_managed_policy(self.config.account_id, f"{service}.{self.config.region}.amazonaws.com"),
                    f"Default key that protects my {service.upper()} objects when no other key is defined", "AWS",
                )
                now = self.clock()
                self.records.put_alias(AliasRecord(alias, record.key_id, now, now), create=True)
                self.records.update_key(record.key_id, lambda r: replace(
                    r, rotation_enabled=True, rotation_period=365, next_rotation=now + 365 * DAY))
                return record.arn
            return self.key_arn(found.target)

    def service_key(self) -> str:
        """The proxy's own key for SSE-S3: invisible to API callers, used only with `service_caller`."""
        with self._lock:
            for r in self.records.keys():
                if r.key_manager == "SERVICE":
                    return r.arn
            return self._new_record(service_caller(self.config.account_id), keys.SYMMETRIC, keys.ENCRYPT_DECRYPT,
                                    '{"Version":"2012-10-17","Statement":[]}', "s3proxy SSE-S3 key", "SERVICE").arn

    def service_caller(self, request_id: str | None = None) -> Caller:
        return service_caller(self.config.account_id, request_id=request_id)


def hmac_eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
