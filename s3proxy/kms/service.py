"""The key service: a facade over its parts, with one audited method per KMS operation.

Callers (the JSON API in `api.py`, the S3 data path through the `DataKeySource` seam, the CLI
tools and the tests) see one object taking the caller first and Python values; it knows nothing
of HTTP or S3. Each public method is one KMS operation: the Auditor records it (exactly one
CloudTrail-shaped record per call, success or failure) and one part does the work:

    KeyService --> KeyAdmin   (admin.py: key lifecycle, rotation, aliases, policies, grants, tags)
               --> Importer   (importing.py: bring your own key material)
               --> CustomKeyStores (custom_stores.py: PKCS#11 tokens as AWS_CLOUDHSM key stores)
               --> Crypto     (crypto.py: Encrypt/Decrypt/data keys/Sign/MAC/ECDH)
               --> Auditor    (auditor.py)
    KeyAdmin, Crypto --> Authorizer (authorizer.py: lookup, key policy + grants, key state)
                     --> Registry   (registry.py: the records, cached over the sealed Keystore)

Thread-safe: records are cached and written with compare-and-swap; the hot data-key path reads
only the cache and appends one audit line. A service opened over a keystore that other processes
share runs one watcher thread that applies their changes to the cache as the keystore signals them
(`Registry.refresh`). `subscribe(listener)` tells a listener the id of each key that changed, here
or elsewhere (the S3 Bucket Key cache drops what it holds for it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from . import keys
from .admin import AliasEntry, DeletionScheduled, KeyAdmin, KeyMetadata, Rotation, RotationStatus
from .audit import AuditSink, FileAuditSink
from .auditor import Auditor, audited
from .authorizer import Authorizer
from .caller import Caller, service_caller
from .config import Config
from .crypto import Crypto, DataKeyPair, Decrypted, PublicKey, ReEncrypted, SharedSecret
from .custom_stores import CustomKeyStores
from .datakeys import DataKey, Encrypted
from .errors import KmsError
from .importing import Importer, ImportParameters
from .integrity import IntegrityRing
from .keystore import open_keystore
from .keystore.base import Keystore
from .policy import Grant
from .registry import Registry, StoreRecord
from .wrapping import Sealer, load_root_key, root_key_location

log = logging.getLogger("s3proxy.kms")


class KeyService:
    @classmethod
    def open(
        cls, data_dir: Path, root_key_file: Path | None = None, *, region: str = "us-east-1",
        account_id: str = "000000000000", administrators: Iterable[str] = (),
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
        audit: AuditSink | None = None, keystore: Keystore | None = None, keystore_url: str | None = None,
        sealer: Sealer | None = None, pkcs11_module: str | None = None,
    ) -> KeyService:
        """The service over the keystore `keystore_url` names (default `<data_dir>/kms/keystore.sqlite3`),
        auditing to `<data_dir>/kms/audit.log`, watching the keystore for other processes' changes; sealed
        under the root key file, or by `sealer` (a root key in a PKCS#11 token: then no root key file is
        read or made). `pkcs11_module`: the PKCS#11 module of custom key stores' tokens."""
        data_dir = Path(data_dir)
        root_path = root_key_location(data_dir, root_key_file)
        if sealer is None:
            sealer = Sealer(load_root_key(root_path, rand=rand), rand=rand,
                            reload=lambda: load_root_key(root_path, create=False))
        store = keystore or open_keystore(keystore_url, data_dir)
        try:
            sink = audit or FileAuditSink(data_dir / "kms" / "audit.log")
        except BaseException:
            store.close()
            raise
        try:
            return cls.create(store, sink, sealer=sealer, region=region, account_id=account_id,
                              administrators=administrators, clock=clock, rand=rand, watch=True,
                              pkcs11_module=pkcs11_module)
        except BaseException:  # e.g. a root key that does not match: leave no handle open behind
            store.close()
            sink.close()
            raise

    @classmethod
    def create(
        cls, keystore: Keystore, audit: AuditSink, *, root_key: bytes | None = None, region: str = "us-east-1",
        account_id: str = "000000000000", administrators: Iterable[str] = (),
        clock: Callable[[], float] = time.time, rand: Callable[[int], bytes] = os.urandom,
        root_reload: Callable[[], bytes] | None = None, sealer: Sealer | None = None, watch: bool = False,
        pkcs11_module: str | None = None,
    ) -> KeyService:
        """The composition: every part built here, each handed only the parts it uses (`sealer`, or one over
        `root_key`). `watch`: apply changes other processes make to the keystore (off for a keystore this
        process alone uses)."""
        config = Config(region, account_id, tuple(administrators))
        if sealer is None:
            if root_key is None:
                raise ValueError("a root key or a sealer is needed")
            sealer = Sealer(root_key, rand=rand, reload=root_reload)
        registry = Registry(keystore, sealer, clock=clock, rand=rand)
        auditor = Auditor(audit, config, clock=clock, rand=rand)
        authorizer = Authorizer(registry, config, note=auditor.note, clock=clock)
        stores = CustomKeyStores(registry, authorizer, module_path=pkcs11_module, clock=clock, rand=rand)
        authorizer.store_connected = stores.connected
        admin = KeyAdmin(registry, authorizer, config, clock=clock, rand=rand, note=auditor.note, stores=stores)
        service = cls(
            keystore, config, registry, auditor, admin, Crypto(authorizer, rand=rand, stores=stores),
            Importer(registry, authorizer, clock=clock, rand=rand), stores,
        )
        bind = getattr(audit, "bind_key", None)  # a keyed sink (FileAuditSink) gets IK_audit from this keystore
        if callable(bind):
            bind(service.integrity().keys().audit)
        service.purge_due()
        if watch:
            service.watch()
        return service

    def __init__(self, keystore: Keystore, config: Config, registry: Registry, auditor: Auditor,
                 admin: KeyAdmin, crypto: Crypto, importer: Importer, stores: CustomKeyStores) -> None:
        self.config = config
        self.records = registry
        self.auditor = auditor
        self.audit = auditor.sink  # the audit trail itself (a MemoryAuditSink's `.records` in tests)
        self.admin = admin
        self.crypto = crypto
        self.importer = importer
        self.stores = stores
        self._keystore = keystore
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None

    def watch(self, interval: float = 1.0) -> None:
        """Start the watcher thread: wait for the keystore's change signal (at most `interval` s), apply what changed."""
        if self._watcher is not None:
            return

        def run() -> None:
            while not self._closing.is_set():
                try:
                    self._keystore.wait_for_change(interval)
                    if not self._closing.is_set():
                        self.records.refresh()
                except Exception as exc:  # keystore unreachable: keep serving from the cache, try again
                    if self._closing.is_set():
                        return  # the keystore was closed under us
                    log.warning("keystore change feed: %s", type(exc).__name__)
                    self._closing.wait(interval)

        self._watcher = threading.Thread(target=run, name="keystore-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._closing.set()
        self.auditor.close()
        self._keystore.close()
        if self._watcher is not None:
            self._watcher.join(10)

    def purge_due(self) -> int:
        """Delete every key whose waiting period has ended (also done lazily on each access)."""
        return self.admin.purge_due()

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(key id)` after each change to a key (state, policy, grants, material), made by
        this process or by another sharing the keystore; returns the unsubscribe."""
        return self.records.on_change(listener)

    def key_arn(self, key_id: str) -> str:
        return self.config.key_arn(key_id)

    def alias_arn(self, alias_name: str) -> str:
        return self.config.alias_arn(alias_name)

    # keys, rotation, aliases, policies, grants, tags: KeyAdmin -----------------------------------
    @audited("CreateKey")
    def create_key(self, caller: Caller, *, description: str = "", key_usage: str | None = None,
                   key_spec: str = keys.SYMMETRIC, policy: str | None = None, tags: Mapping[str, str] | None = None,
                   origin: str = "AWS_KMS", bypass_policy_lockout_safety_check: bool = False,
                   custom_key_store_id: str | None = None) -> KeyMetadata:
        return self.admin.create_key(
            caller, description=description, key_usage=key_usage, key_spec=key_spec, policy=policy, tags=tags, origin=origin,
            bypass_policy_lockout_safety_check=bypass_policy_lockout_safety_check, custom_key_store_id=custom_key_store_id,
        )

    @audited("DescribeKey", read_only=True)
    def describe_key(self, caller: Caller, key_id: str) -> KeyMetadata:
        return self.admin.describe_key(caller, key_id)

    @audited("ListKeys", read_only=True)
    def list_keys(self, caller: Caller) -> list[tuple[str, str]]:
        return self.admin.list_keys(caller)

    @audited("UpdateKeyDescription")
    def update_key_description(self, caller: Caller, key_id: str, description: str) -> None:
        self.admin.update_key_description(caller, key_id, description)

    @audited("EnableKey")
    def enable_key(self, caller: Caller, key_id: str) -> None:
        self.admin.enable_key(caller, key_id)

    @audited("DisableKey")
    def disable_key(self, caller: Caller, key_id: str) -> None:
        self.admin.disable_key(caller, key_id)

    @audited("ScheduleKeyDeletion")
    def schedule_key_deletion(self, caller: Caller, key_id: str, pending_window_in_days: int = 30) -> DeletionScheduled:
        return self.admin.schedule_key_deletion(caller, key_id, pending_window_in_days)

    @audited("CancelKeyDeletion")
    def cancel_key_deletion(self, caller: Caller, key_id: str) -> str:
        return self.admin.cancel_key_deletion(caller, key_id)

    @audited("EnableKeyRotation")
    def enable_key_rotation(self, caller: Caller, key_id: str, rotation_period_in_days: int = 365) -> None:
        self.admin.enable_key_rotation(caller, key_id, rotation_period_in_days)

    @audited("DisableKeyRotation")
    def disable_key_rotation(self, caller: Caller, key_id: str) -> None:
        self.admin.disable_key_rotation(caller, key_id)

    @audited("GetKeyRotationStatus", read_only=True)
    def get_key_rotation_status(self, caller: Caller, key_id: str) -> RotationStatus:
        return self.admin.get_key_rotation_status(caller, key_id)

    @audited("RotateKeyOnDemand")
    def rotate_key_on_demand(self, caller: Caller, key_id: str) -> str:
        return self.admin.rotate_key_on_demand(caller, key_id)

    @audited("ListKeyRotations", read_only=True)
    def list_key_rotations(self, caller: Caller, key_id: str) -> list[Rotation]:
        return self.admin.list_key_rotations(caller, key_id)

    @audited("CreateAlias")
    def create_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self.admin.create_alias(caller, alias_name, target_key_id)

    @audited("UpdateAlias")
    def update_alias(self, caller: Caller, alias_name: str, target_key_id: str) -> None:
        self.admin.update_alias(caller, alias_name, target_key_id)

    @audited("DeleteAlias")
    def delete_alias(self, caller: Caller, alias_name: str) -> None:
        self.admin.delete_alias(caller, alias_name)

    @audited("ListAliases", read_only=True)
    def list_aliases(self, caller: Caller, key_id: str | None = None) -> list[AliasEntry]:
        return self.admin.list_aliases(caller, key_id)

    @audited("PutKeyPolicy")
    def put_key_policy(self, caller: Caller, key_id: str, policy: str, policy_name: str = "default",
                       bypass_policy_lockout_safety_check: bool = False) -> None:
        self.admin.put_key_policy(caller, key_id, policy, policy_name, bypass_policy_lockout_safety_check)

    @audited("GetKeyPolicy", read_only=True)
    def get_key_policy(self, caller: Caller, key_id: str, policy_name: str = "default") -> str:
        return self.admin.get_key_policy(caller, key_id, policy_name)

    @audited("ListKeyPolicies", read_only=True)
    def list_key_policies(self, caller: Caller, key_id: str) -> list[str]:
        return self.admin.list_key_policies(caller, key_id)

    @audited("CreateGrant")
    def create_grant(self, caller: Caller, key_id: str, grantee_principal: str, operations: Iterable[str],
                     retiring_principal: str | None = None, constraints: Mapping[str, Mapping[str, str]] | None = None,
                     name: str | None = None) -> tuple[str, str]:
        return self.admin.create_grant(caller, key_id, grantee_principal, operations, retiring_principal, constraints, name)

    @audited("ListGrants", read_only=True)
    def list_grants(self, caller: Caller, key_id: str, grant_id: str | None = None,
                    grantee_principal: str | None = None) -> list[Grant]:
        return self.admin.list_grants(caller, key_id, grant_id, grantee_principal)

    @audited("RetireGrant")
    def retire_grant(self, caller: Caller, grant_token: str | None = None, key_id: str | None = None,
                     grant_id: str | None = None) -> None:
        self.admin.retire_grant(caller, grant_token, key_id, grant_id)

    @audited("RevokeGrant")
    def revoke_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        self.admin.revoke_grant(caller, key_id, grant_id)

    @audited("TagResource")
    def tag_resource(self, caller: Caller, key_id: str, tags: Mapping[str, str]) -> None:
        self.admin.tag_resource(caller, key_id, tags)

    @audited("UntagResource")
    def untag_resource(self, caller: Caller, key_id: str, tag_keys: Iterable[str]) -> None:
        self.admin.untag_resource(caller, key_id, tag_keys)

    @audited("ListResourceTags", read_only=True)
    def list_resource_tags(self, caller: Caller, key_id: str) -> dict[str, str]:
        return self.admin.list_resource_tags(caller, key_id)

    # custom key stores: CustomKeyStores (the PIN, key_store_password, is never among the audited parameters) ----
    @audited("CreateCustomKeyStore")
    def create_custom_key_store(self, caller: Caller, custom_key_store_name: str, cloud_hsm_cluster_id: str | None = None,
                                trust_anchor_certificate: str | None = None, key_store_password: str | None = None,
                                custom_key_store_type: str | None = None) -> str:
        return self.stores.create(caller, custom_key_store_name, cloud_hsm_cluster_id, trust_anchor_certificate,
                                  key_store_password, custom_key_store_type)

    @audited("DescribeCustomKeyStores", read_only=True)
    def describe_custom_key_stores(self, caller: Caller, custom_key_store_id: str | None = None,
                                   custom_key_store_name: str | None = None) -> list[StoreRecord]:
        return self.stores.describe(caller, custom_key_store_id, custom_key_store_name)

    @audited("ConnectCustomKeyStore")
    def connect_custom_key_store(self, caller: Caller, custom_key_store_id: str) -> None:
        self.stores.connect(caller, custom_key_store_id)

    @audited("DisconnectCustomKeyStore")
    def disconnect_custom_key_store(self, caller: Caller, custom_key_store_id: str) -> None:
        self.stores.disconnect(caller, custom_key_store_id)

    @audited("UpdateCustomKeyStore")
    def update_custom_key_store(self, caller: Caller, custom_key_store_id: str, new_custom_key_store_name: str | None = None,
                                key_store_password: str | None = None, cloud_hsm_cluster_id: str | None = None) -> None:
        self.stores.update(caller, custom_key_store_id, new_custom_key_store_name, key_store_password, cloud_hsm_cluster_id)

    @audited("DeleteCustomKeyStore")
    def delete_custom_key_store(self, caller: Caller, custom_key_store_id: str) -> None:
        self.stores.delete(caller, custom_key_store_id)

    # imported key material: Importer ------------------------------------------------------------
    @audited("GetParametersForImport")
    def get_parameters_for_import(self, caller: Caller, key_id: str, wrapping_algorithm: str,
                                  wrapping_key_spec: str) -> ImportParameters:
        return self.importer.get_parameters_for_import(caller, key_id, wrapping_algorithm, wrapping_key_spec)

    @audited("ImportKeyMaterial")
    def import_key_material(self, caller: Caller, key_id: str, import_token: bytes, encrypted_key_material: bytes,
                            expiration_model: str | None = None, valid_to: float | None = None,
                            import_type: str | None = None) -> tuple[str, str]:
        return self.importer.import_key_material(caller, key_id, import_token, encrypted_key_material,
                                                 expiration_model, valid_to, import_type)

    @audited("DeleteImportedKeyMaterial")
    def delete_imported_key_material(self, caller: Caller, key_id: str, key_material_id: str | None = None) -> tuple[str, str]:
        return self.importer.delete_imported_key_material(caller, key_id, key_material_id)

    # cryptographic operations and data keys: Crypto ---------------------------------------------
    @audited("Encrypt")
    def encrypt(self, caller: Caller, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None,
                encryption_algorithm: str = keys.SYMMETRIC) -> Encrypted:
        return self.crypto.encrypt(caller, key_id, plaintext, context, encryption_algorithm)

    @audited("Decrypt", read_only=True)
    def decrypt(self, caller: Caller, ciphertext_blob: bytes, context: Mapping[str, str] | None = None,
                key_id: str | None = None, encryption_algorithm: str | None = None) -> Decrypted:
        return self.crypto.decrypt(caller, ciphertext_blob, context, key_id, encryption_algorithm)

    @audited("ReEncrypt")
    def re_encrypt(self, caller: Caller, ciphertext_blob: bytes, destination_key_id: str,
                   source_context: Mapping[str, str] | None = None, destination_context: Mapping[str, str] | None = None,
                   source_key_id: str | None = None, source_encryption_algorithm: str | None = None,
                   destination_encryption_algorithm: str = keys.SYMMETRIC) -> ReEncrypted:
        return self.crypto.re_encrypt(caller, ciphertext_blob, destination_key_id, source_context, destination_context,
                                      source_key_id, source_encryption_algorithm, destination_encryption_algorithm)

    @audited("GenerateDataKey")
    def generate_data_key(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None,
                          key_spec: str | None = None, number_of_bytes: int | None = None) -> DataKey:
        return self.crypto.generate_data_key(caller, key_id, context, key_spec, number_of_bytes)

    @audited("GenerateDataKeyWithoutPlaintext")
    def generate_data_key_without_plaintext(self, caller: Caller, key_id: str, context: Mapping[str, str] | None = None,
                                            key_spec: str | None = None, number_of_bytes: int | None = None) -> DataKey:
        return self.crypto.generate_data_key_without_plaintext(caller, key_id, context, key_spec, number_of_bytes)

    @audited("GenerateDataKeyPair")
    def generate_data_key_pair(self, caller: Caller, key_id: str, key_pair_spec: str,
                               context: Mapping[str, str] | None = None) -> DataKeyPair:
        return self.crypto.generate_data_key_pair(caller, key_id, key_pair_spec, context)

    @audited("GenerateDataKeyPairWithoutPlaintext")
    def generate_data_key_pair_without_plaintext(self, caller: Caller, key_id: str, key_pair_spec: str,
                                                 context: Mapping[str, str] | None = None) -> DataKeyPair:
        return self.crypto.generate_data_key_pair_without_plaintext(caller, key_id, key_pair_spec, context)

    @audited("GenerateRandom", read_only=True)
    def generate_random(self, caller: Caller, number_of_bytes: int, custom_key_store_id: str | None = None) -> bytes:
        return self.crypto.generate_random(caller, number_of_bytes, custom_key_store_id)

    @audited("Sign")
    def sign(self, caller: Caller, key_id: str, message: bytes, signing_algorithm: str,
             message_type: str = "RAW") -> tuple[str, bytes]:
        return self.crypto.sign(caller, key_id, message, signing_algorithm, message_type)

    @audited("Verify", read_only=True)
    def verify(self, caller: Caller, key_id: str, message: bytes, signature: bytes, signing_algorithm: str,
               message_type: str = "RAW") -> str:
        return self.crypto.verify(caller, key_id, message, signature, signing_algorithm, message_type)

    @audited("GetPublicKey", read_only=True)
    def get_public_key(self, caller: Caller, key_id: str) -> PublicKey:
        return self.crypto.get_public_key(caller, key_id)

    @audited("DeriveSharedSecret")
    def derive_shared_secret(self, caller: Caller, key_id: str, key_agreement_algorithm: str,
                             public_key: bytes) -> SharedSecret:
        return self.crypto.derive_shared_secret(caller, key_id, key_agreement_algorithm, public_key)

    @audited("GenerateMac")
    def generate_mac(self, caller: Caller, key_id: str, message: bytes, mac_algorithm: str) -> tuple[str, bytes]:
        return self.crypto.generate_mac(caller, key_id, message, mac_algorithm)

    @audited("VerifyMac", read_only=True)
    def verify_mac(self, caller: Caller, key_id: str, message: bytes, mac: bytes, mac_algorithm: str) -> str:
        return self.crypto.verify_mac(caller, key_id, message, mac, mac_algorithm)

    @audited("Decrypt", read_only=True)
    def decrypt_data_key(self, caller: Caller, blob: bytes, context: Mapping[str, str] | None = None) -> DataKey:
        return self.crypto.decrypt_data_key(caller, blob, context)

    @audited("DescribeKey", read_only=True)
    def resolve_key(self, caller: Caller, key_id: str) -> str:
        return self.crypto.resolve_key(caller, key_id)

    def use_bucket_key(self, caller: Caller, key_id: str, key_arn: str, operation: str,
                       context: Mapping[str, str] | None, bucket: str) -> bool:
        """Authorize one use of an S3 Bucket Key the data path holds from `key_arn` (`operation`: GenerateDataKey to
        wrap a new object's key, Decrypt to unwrap one) against the key's policy, grants and state now, and count it
        for the audit (one BucketKeyUse record per second and tally). False when `key_id` no longer names `key_arn`
        (an alias moved: not a use); the KMS error when the use is refused, which is counted too."""
        try:
            current = self.crypto.check_use(caller, key_id, key_arn, operation, context)
        except KmsError as exc:
            self.auditor.count_use(operation, caller, key_arn, bucket, exc)
            raise
        if current:
            self.auditor.count_use(operation, caller, key_arn, bucket, None)
        return current

    # the data path's own keys (with the data-key calls above: the DataKeySource seam) -----------
    def aws_managed_key(self, caller: Caller, alias: str = "alias/aws/s3") -> str:
        """The AWS-managed key behind `alias` (created on first use), as S3 uses for SSE-KMS without a key id."""
        return self.admin.aws_managed_key(caller, alias)

    def service_key(self) -> str:
        """The proxy's own key for SSE-S3: invisible to API callers, used only with `service_caller`."""
        return self.admin.service_key()

    def is_service_key(self, key_arn: str) -> bool:
        """Whether `key_arn` is one of the proxy's own SSE-S3 keys."""
        return self.admin.is_service_key(key_arn)

    def service_caller(self, request_id: str | None = None) -> Caller:
        return service_caller(self.config.account_id, request_id=request_id)

    def integrity(self) -> IntegrityRing:
        """The integrity key IK and the record anchors on this keystore (kms/integrity.py), one per
        service; IK is created on first use. Not a KMS operation: not audited, no caller."""
        ring: IntegrityRing | None = getattr(self, "_integrity", None)
        if ring is None:
            ring = self._integrity = IntegrityRing(self._keystore, self.records._sealer)
        return ring
