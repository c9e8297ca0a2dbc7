"""Custom key stores of type AWS_CLOUDHSM, here PKCS#11 tokens: KMS keys whose material is made and kept in one.

AWS backs such a store with a CloudHSM cluster; here it is a token of the PKCS#11 module that the
`pkcs11_module` setting names (SoftHSM2 in the tests). The API's members map so (docs/KMS.md):
- CloudHsmClusterId names the token: a `pkcs11:` URI with only token=, serial= and/or slot-id= (no key,
  no PIN, no module: an API caller never chooses the library loaded or a file read), or AWS's
  `cluster-...` form, read as the token's label. One token serves at most one store.
- KeyStorePassword is the token's user PIN (AWS: the kmsuser password). It is kept only in the store's
  record, which the keystore holds sealed under the root key like every record; never logged, audited
  or shown.
- TrustAnchorCertificate must be a PEM X.509 certificate; it is kept and shown, not used: a local
  PKCS#11 module has no TLS to check it against.

Stores belong to an account and are Registry records (`s/<id>`), so every process sharing the keystore
sees them and they survive restarts. ConnectCustomKeyStore is synchronous: it logs in to the token in
this process before it answers, and the store is then CONNECTED, or FAILED with a ConnectionErrorCode
(DescribeCustomKeyStores shows which); other processes log in at their first use of the store.
DisconnectCustomKeyStore closes the session. A key of a store that is not CONNECTED is Unavailable
(KMSInvalidStateException for cryptography). While a store is CONNECTED but its token cannot be
reached, whatever needs the token fails with KeyUnavailableException and writes nothing; it succeeds
again once the token is back (pkcs11.Token re-initialises the module and logs in again).

A KMS key of a store is an AES-256 key generated inside the token (sensitive, never extractable,
encrypt/decrypt only), labelled with the KMS key id and with the id's 16 bytes as CKA_ID; the key
record holds no material. Its ciphertext blobs have the outer format of every symmetric blob
(`wrapping.seal_blob_in`). When its deletion waiting period is over, the token object is destroyed
first (best effort, as AWS: when the token cannot be reached the log names what is left behind).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from cryptography import x509

from .authorizer import Authorizer
from .caller import Caller
from .errors import (
    CloudHsmClusterInUseException,
    CloudHsmClusterInvalidConfigurationException,
    CloudHsmClusterNotFoundException,
    CloudHsmClusterNotRelatedException,
    CustomKeyStoreHasCMKsException,
    CustomKeyStoreInvalidStateException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
    IncorrectTrustAnchorException,
    KeystoreConflict,
    KeyUnavailableException,
    KmsError,
    KMSInvalidStateException,
    LimitExceededException,
    Pkcs11Error,
    UnsupportedOperationException,
    ValidationException,
    member_error,
)
from .pkcs11 import Pkcs11Uri, Token, TokenAead, token_present
from .registry import KeyRecord, Registry, StoreRecord
from .wrapping import Aead

CLOUDHSM = "AWS_CLOUDHSM"
CONNECTED, DISCONNECTED, FAILED = "CONNECTED", "DISCONNECTED", "FAILED"
MAX_STORES = 10  # per account, AWS's quota
_CLUSTER = re.compile(r"cluster-[2-7a-zA-Z]{11,16}")
_TOKEN_ATTRS = {"token", "serial", "slot-id"}
# why a login failed (pkcs11.Pkcs11Error.reason) -> ConnectionErrorCode
_ERROR_CODES = {"token": "CLUSTER_NOT_FOUND", "pin": "INVALID_CREDENTIALS", "locked": "USER_LOCKED_OUT"}
_log = logging.getLogger(__name__)


def token_uri(cluster_id: str) -> Pkcs11Uri:
    """The token a CloudHsmClusterId names (ValidationException for anything else)."""
    if _CLUSTER.fullmatch(cluster_id):
        return Pkcs11Uri(f"pkcs11:token={cluster_id}", token=cluster_id)
    if len(cluster_id) > 512 or not cluster_id.startswith("pkcs11:") or "?" in cluster_id:
        raise ValidationException(
            "CloudHsmClusterId names a PKCS#11 token: pkcs11:token=<label> (or serial=, slot-id=) without a query, "
            "or a token label of the form cluster-<11 to 16 letters or digits 2-7>.")
    names = {item.partition("=")[0] for item in cluster_id[len("pkcs11:"):].split(";") if item}
    try:
        uri = Pkcs11Uri.parse(cluster_id)
    except Pkcs11Error as exc:
        raise ValidationException(f"CloudHsmClusterId: {exc}") from None
    if not names or not names <= _TOKEN_ATTRS:
        raise ValidationException("CloudHsmClusterId names a token by token=, serial= and/or slot-id= only.")
    return uri


def _token_identity(cluster_id: str) -> tuple[object, ...]:
    uri = token_uri(cluster_id)
    return (uri.token, uri.serial, uri.slot_id)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not 7 <= len(password) <= 32:
        raise member_error("keyStorePassword", "have length between 7 and 32")  # the value is never shown


def _check_name(name: str, member: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise member_error(member, "have length between 1 and 256", name if isinstance(name, str) else None)


def _login(module_path: str, cluster_id: str, password: str, store_id: str) -> Token:
    """A logged-in session on the token; any failure of the module is a Pkcs11Error (reason "" unless known)."""
    try:
        return Token(module_path, token_uri(cluster_id), password, f"custom key store {store_id}")
    except (Pkcs11Error, KmsError):
        raise
    except Exception as exc:  # another PKCS#11 error (a token that vanished mid-login, a PIN the token cannot take)
        raise Pkcs11Error(f"custom key store {store_id}: {type(exc).__name__} from the PKCS#11 module") from None


class _StoreAead:
    """A KMS key's AES key in its token, with AESGCM's interface; a token that cannot be reached is
    KeyUnavailableException naming the store."""

    def __init__(self, inner: Aead, store_id: str) -> None:
        self._inner = inner
        self._store_id = store_id

    def _unavailable(self) -> KmsError:
        return KeyUnavailableException(
            f"The PKCS#11 token of custom key store {self._store_id} cannot be reached; retry when it is back.")

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        try:
            return self._inner.encrypt(nonce, data, associated_data)
        except KmsError:
            raise self._unavailable() from None

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        try:
            return self._inner.decrypt(nonce, data, associated_data)
        except KmsError:
            raise self._unavailable() from None


class CustomKeyStores:
    """The custom key store operations, and the token side of their keys. Thread-safe."""

    def __init__(self, registry: Registry, authorizer: Authorizer, *, module_path: str | None = None,
                 clock: Callable[[], float] = time.time, rand: Callable[[int], bytes]) -> None:
        self._registry = registry
        self._authz = authorizer
        self._module = module_path
        self._clock = clock
        self._rand = rand
        self._lock = threading.RLock()
        self._sessions: dict[str, tuple[tuple[str, str], Token]] = {}  # store id -> ((cluster id, PIN), pkcs11.Token)
        self._aeads: dict[str, tuple[Token, Aead]] = {}  # key id -> (the Token it was made on, its AEAD)
        registry.on_purge(self._destroy)
        registry.on_change(self._changed)

    # the records ------------------------------------------------------------------------------
    def _own(self, caller: Caller, store_id: str) -> StoreRecord:
        if not isinstance(store_id, str) or not 1 <= len(store_id) <= 64:
            shown = store_id if isinstance(store_id, str) else None
            raise member_error("customKeyStoreId", "have length between 1 and 64", shown)
        found = self._registry.store(store_id, fresh=True)
        if found is None or found.account_id != caller.account_id:
            raise CustomKeyStoreNotFoundException(f"Custom key store {store_id} does not exist in this account.")
        return found

    def _put(self, new: StoreRecord, old: StoreRecord) -> None:
        try:
            self._registry.put_store(new, expected=old)
        except KeystoreConflict:
            raise CustomKeyStoreInvalidStateException(
                f"Custom key store {old.store_id} was changed by another request at the same time; describe it and retry."
            ) from None

    def _module_path(self) -> str:
        if not self._module:
            raise UnsupportedOperationException(
                "Custom key stores of type AWS_CLOUDHSM need the pkcs11_module setting: the PKCS#11 module of their tokens.")
        return self._module

    def _find_token(self, cluster_id: str) -> None:
        """CloudHsmClusterNotFoundException unless the token is there (no login: a PIN is tried only on connect)."""
        module = self._module_path()
        try:
            present = token_present(module, token_uri(cluster_id))
        except KmsError:
            raise
        except Exception as exc:  # Pkcs11Error (no library) or a PKCS#11 error of the module
            raise UnsupportedOperationException(f"The PKCS#11 module cannot be used: {type(exc).__name__}: {exc}") from None
        if not present:
            raise CloudHsmClusterNotFoundException(f"No PKCS#11 token matches {cluster_id}.")

    def _check_cluster(self, cluster_id: str, store_id: str | None) -> None:
        if not isinstance(cluster_id, str):
            raise member_error("cloudHsmClusterId", "not be null", None)
        identity = _token_identity(cluster_id)
        for s in self._registry.stores():
            if s.store_id != store_id and _token_identity(s.cluster_id) == identity:
                raise CloudHsmClusterInUseException(f"The token {cluster_id} is the token of another custom key store.")
        self._find_token(cluster_id)

    def create(self, caller: Caller, name: str, cluster_id: str | None, trust_anchor: str | None,
               password: str | None, store_type: str | None) -> str:
        if store_type not in (None, CLOUDHSM):
            if store_type == "EXTERNAL_KEY_STORE":
                raise UnsupportedOperationException("External key stores (EXTERNAL_KEY_STORE) are not supported by this KMS.")
            raise member_error("customKeyStoreType", "satisfy enum value set: [AWS_CLOUDHSM, EXTERNAL_KEY_STORE]", store_type)
        _check_name(name, "customKeyStoreName")
        if cluster_id is None:
            raise member_error("cloudHsmClusterId", "not be null", None)
        if trust_anchor is None:
            raise member_error("trustAnchorCertificate", "not be null", None)
        if password is None:
            raise member_error("keyStorePassword", "not be null", None)
        _check_password(password)
        token_uri(cluster_id)
        self._authz.authorize_account(caller, "CreateCustomKeyStore")
        if not isinstance(trust_anchor, str) or not 1 <= len(trust_anchor) <= 5000:
            raise member_error("trustAnchorCertificate", "have length between 1 and 5000")
        try:
            x509.load_pem_x509_certificate(trust_anchor.encode())
        except ValueError:
            raise IncorrectTrustAnchorException() from None
        with self._lock:
            mine = [s for s in self._registry.stores() if s.account_id == caller.account_id]
            if any(s.name == name for s in mine):
                raise CustomKeyStoreNameInUseException(f"A custom key store named {name} already exists in this account.")
            if len(mine) >= MAX_STORES:
                raise LimitExceededException(f"An account may have at most {MAX_STORES} custom key stores.")
            self._check_cluster(cluster_id, None)
            record = StoreRecord("cks-" + self._rand(9).hex()[:17], caller.account_id, name, cluster_id, trust_anchor,
                                 password, self._clock())
            self._registry.put_store(record, create=True)
        return record.store_id

    def describe(self, caller: Caller, store_id: str | None, name: str | None) -> list[StoreRecord]:
        if store_id is not None and name is not None:
            raise ValidationException("Specify CustomKeyStoreId or CustomKeyStoreName, not both.")
        if name is not None:
            _check_name(name, "customKeyStoreName")
        self._authz.authorize_account(caller, "DescribeCustomKeyStores")
        if store_id is not None:
            return [self._own(caller, store_id)]
        found = [s for s in self._registry.stores() if s.account_id == caller.account_id and name in (None, s.name)]
        if name is not None and not found:
            raise CustomKeyStoreNotFoundException(f"No custom key store is named {name} in this account.")
        return found

    def connect(self, caller: Caller, store_id: str) -> None:
        self._authz.authorize_account(caller, "ConnectCustomKeyStore")
        with self._lock:
            s = self._own(caller, store_id)
            if s.connection_state == FAILED:
                raise CustomKeyStoreInvalidStateException(
                    f"Custom key store {store_id} is FAILED: disconnect it, correct the error, and connect it again.")
            try:
                self._token(s, connecting=True)
            except Pkcs11Error as exc:
                code = _ERROR_CODES.get(exc.reason, "INTERNAL_ERROR")
                _log.warning("custom key store %s: connecting to %s failed: %s", store_id, s.cluster_id, code)
                self._put(replace(s, connection_state=FAILED, error_code=code), s)
                return
            if s.connection_state != CONNECTED:
                self._put(replace(s, connection_state=CONNECTED, error_code=None), s)

    def disconnect(self, caller: Caller, store_id: str) -> None:
        self._authz.authorize_account(caller, "DisconnectCustomKeyStore")
        with self._lock:
            s = self._own(caller, store_id)
            if s.connection_state == DISCONNECTED:
                raise CustomKeyStoreInvalidStateException(f"Custom key store {store_id} is already disconnected.")
            self._put(replace(s, connection_state=DISCONNECTED, error_code=None), s)
            self._close(store_id)

    def update(self, caller: Caller, store_id: str, new_name: str | None, password: str | None,
               cluster_id: str | None) -> None:
        if new_name is not None:
            _check_name(new_name, "newCustomKeyStoreName")
        if password is not None:
            _check_password(password)
        if cluster_id is not None:
            token_uri(cluster_id)
        self._authz.authorize_account(caller, "UpdateCustomKeyStore")
        with self._lock:
            s = self._own(caller, store_id)
            if (password is not None or cluster_id is not None) and s.connection_state != DISCONNECTED:
                raise CustomKeyStoreInvalidStateException(
                    f"Custom key store {store_id} must be disconnected to change its password or token.")
            if new_name is not None and s.connection_state not in (CONNECTED, DISCONNECTED):
                raise CustomKeyStoreInvalidStateException(f"Custom key store {store_id} is {s.connection_state}.")
            if new_name is not None and new_name != s.name and any(
                    o.name == new_name for o in self._registry.stores() if o.account_id == s.account_id):
                raise CustomKeyStoreNameInUseException(f"A custom key store named {new_name} already exists in this account.")
            if cluster_id is not None and cluster_id != s.cluster_id:
                self._check_cluster(cluster_id, store_id)
                self._check_related(s, cluster_id, password or s.password)
            self._put(replace(s, name=new_name or s.name, password=password or s.password,
                              cluster_id=cluster_id or s.cluster_id), s)

    def _check_related(self, s: StoreRecord, cluster_id: str, password: str) -> None:
        """Another token may replace a store's only if it holds every one of the store's keys (a backup or clone)."""
        held = [r for r in self._registry.keys() if r.custom_key_store_id == s.store_id]
        if not held:
            return
        try:
            token = _login(self._module_path(), cluster_id, password, s.store_id)
        except Pkcs11Error as exc:
            raise CloudHsmClusterInvalidConfigurationException(
                f"Cannot log in to {cluster_id} to check that it holds this store's keys "
                f"({_ERROR_CODES.get(exc.reason, 'INTERNAL_ERROR')}).") from None
        try:
            missing = [r.key_id for r in held if token.find_aes(r.key_id, uuid.UUID(r.key_id).bytes) is None]
        finally:
            token.close()
        if missing:
            raise CloudHsmClusterNotRelatedException(
                f"The token {cluster_id} lacks the key material of {len(missing)} KMS key(s) of this store, e.g. {missing[0]}.")

    def delete(self, caller: Caller, store_id: str) -> None:
        self._authz.authorize_account(caller, "DeleteCustomKeyStore")
        with self._lock:
            s = self._own(caller, store_id)
            if s.connection_state != DISCONNECTED:
                raise CustomKeyStoreInvalidStateException(f"Custom key store {store_id} must be disconnected to be deleted.")
            if any(r.custom_key_store_id == store_id for r in self._registry.keys()):
                raise CustomKeyStoreHasCMKsException(
                    f"Custom key store {store_id} still holds KMS keys: schedule their deletion and wait for it first.")
            self._registry.remove_store(store_id)

    # sessions ---------------------------------------------------------------------------------
    def connected(self, store_id: str) -> bool:
        s = self._registry.store(store_id)
        return s is not None and s.connection_state == CONNECTED

    def _token(self, s: StoreRecord, *, connecting: bool = False) -> Token:
        """This process's logged-in session on the store's token, opened now if need be (Pkcs11Error when
        `connecting`, else KeyUnavailableException)."""
        with self._lock:
            held = self._sessions.get(s.store_id)
            if held is not None and held[0] == (s.cluster_id, s.password):
                return held[1]
            self._close(s.store_id)
            try:
                token = _login(self._module_path(), s.cluster_id, s.password, s.store_id)
            except Pkcs11Error as exc:
                if connecting:
                    raise
                _log.error("custom key store %s: cannot log in to %s (%s)", s.store_id, s.cluster_id,
                           _ERROR_CODES.get(exc.reason, "INTERNAL_ERROR"))
                raise KeyUnavailableException(
                    f"The PKCS#11 token of custom key store {s.store_id} cannot be reached; retry when it is back.") from None
            self._sessions[s.store_id] = ((s.cluster_id, s.password), token)
            return token

    def _close(self, store_id: str) -> None:
        with self._lock:
            held = self._sessions.pop(store_id, None)
            if held is not None:
                for kid in [k for k, (t, _) in self._aeads.items() if t is held[1]]:
                    del self._aeads[kid]
                held[1].close()

    def _changed(self, key_id: str) -> None:
        """A key changed (a store's change announces its keys): close a session whose store is no longer connected."""
        record = self._registry.key(key_id)
        if record is not None and record.custom_key_store_id is not None and not self.connected(record.custom_key_store_id):
            self._close(record.custom_key_store_id)

    def _connected_store(self, record: KeyRecord) -> StoreRecord:
        s = self._registry.store(record.custom_key_store_id or "")
        if s is None or s.connection_state != CONNECTED:
            raise KMSInvalidStateException(f"{record.arn} is unavailable: its custom key store is not connected.")
        return s

    # the keys ---------------------------------------------------------------------------------
    def store_for_new_key(self, caller: Caller, store_id: str) -> StoreRecord:
        """The connected store of this account a new key goes into."""
        s = self._own(caller, store_id)
        if s.connection_state != CONNECTED:
            raise CustomKeyStoreInvalidStateException(
                f"Custom key store {store_id} is {s.connection_state}; keys are created only in a connected store.")
        return s

    def generate(self, s: StoreRecord, key_id: str) -> None:
        """Generate the AES-256 key of KMS key `key_id` inside the store's token."""
        token = self._token(s)
        try:
            token.generate_aes(key_id, uuid.UUID(key_id).bytes)
        except KmsError:
            raise KeyUnavailableException(
                f"The PKCS#11 token of custom key store {s.store_id} cannot be reached; retry when it is back.") from None

    def discard(self, s: StoreRecord, key_id: str) -> None:
        """Undo `generate` (the key record could not be stored)."""
        try:
            self._token(s).destroy_aes(key_id, uuid.UUID(key_id).bytes)
        except Exception:
            _log.warning("custom key store %s: key material %s left in token %s; delete it there",
                         s.store_id, key_id, s.cluster_id)

    def aead(self, record: KeyRecord) -> Aead:
        """The AES-GCM of `record`'s key inside its token."""
        s = self._connected_store(record)
        token = self._token(s)
        with self._lock:
            held = self._aeads.get(record.key_id)
            if held is None or held[0] is not token:
                held = (token, _StoreAead(TokenAead(token, record.key_id, uuid.UUID(record.key_id).bytes),
                                          s.store_id))
                self._aeads[record.key_id] = held
            return held[1]

    def random(self, caller: Caller, store_id: str, size: int) -> bytes:
        """GenerateRandom in the store's token."""
        s = self._own(caller, store_id)
        if s.connection_state != CONNECTED:
            raise CustomKeyStoreInvalidStateException(f"Custom key store {store_id} is not connected.")
        try:
            return bytes(self._token(s).random(size))
        except KmsError:
            raise KeyUnavailableException(
                f"The PKCS#11 token of custom key store {store_id} cannot be reached; retry when it is back.") from None

    def cluster_id(self, record: KeyRecord) -> str | None:
        s = self._registry.store(record.custom_key_store_id) if record.custom_key_store_id else None
        return s.cluster_id if s is not None else None

    def _destroy(self, record: KeyRecord) -> None:
        """A store key's waiting period is over: destroy its token object (best effort)."""
        if record.custom_key_store_id is None:
            return
        s = self._registry.store(record.custom_key_store_id)
        try:
            if s is None or s.connection_state != CONNECTED:
                raise KMSInvalidStateException("the store is not connected")
            self._token(s).destroy_aes(record.key_id, uuid.UUID(record.key_id).bytes)
            _log.info("custom key store %s: destroyed the key material of %s in its token", s.store_id, record.key_id)
        except Exception as exc:  # as AWS: the KMS key goes, its material may be left in the token
            _log.warning("custom key store %s: could not destroy the key material of deleted key %s (%s); "
                         "delete the token object labelled %s by hand", record.custom_key_store_id, record.key_id,
                         type(exc).__name__, record.key_id)
