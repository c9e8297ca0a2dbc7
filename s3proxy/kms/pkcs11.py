"""Keys that live in a PKCS#11 token (an HSM; SoftHSM2 in the tests): AES-256-GCM done inside the token.

`Pkcs11Uri` reads an RFC 7512 `pkcs11:` URI (token, serial, slot-id, object, id, type in the path;
pin-value, pin-source, module-path in the query). `Token` is one logged-in session to one token
through one module (python-pkcs11, imported only here and only when a token is used: the `hsm`
extra). `TokenAead` is an AES key of the token with the interface of `cryptography`'s AESGCM
(`encrypt(nonce, data, aad)` -> ciphertext ‖ tag, `decrypt` raising InvalidTag), so the root
Sealer and the PKCS#11 key stores use it as they would a key in memory; the key's value never
leaves the token: keys are made with CKA_SENSITIVE, without CKA_EXTRACTABLE, and only AES-GCM
encrypt/decrypt run on them.

A token that goes away (pulled, its daemon restarted, its files moved) fails the call in hand with
`TokenUnavailable`, a KMS error that says so; the next call re-initialises the module once and logs in
again, so service resumes when the token is back, without a restart. One lock per token: a PKCS#11
session runs one operation at a time.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag

from .errors import KmsError, Pkcs11Error

T = TypeVar("T")
_log = logging.getLogger(__name__)
_PATH_ATTRS = {"token", "manufacturer", "serial", "model", "library-manufacturer", "library-description",
               "library-version", "slot-manufacturer", "slot-description", "slot-id", "object", "id", "type"}
_QUERY_ATTRS = {"pin-value", "pin-source", "module-path", "module-name"}


class TokenUnavailable(KmsError):
    """The token cannot be reached or refused the session; the call can be retried once it is back."""

    code = "KMSInternalException"
    status = 500
    message = "The PKCS#11 token holding this key cannot be reached; retry when it is back."


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI this proxy uses; `text` is the URI without its PIN, for messages."""

    text: str
    token: str | None = None
    serial: str | None = None
    slot_id: int | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    module_path: str | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not text.startswith("pkcs11:"):
            raise Pkcs11Error("a PKCS#11 URI starts with pkcs11:")
        path, _, query = text[len("pkcs11:"):].partition("?")
        values: dict[str, str] = {}
        for part, allowed, sep in ((path, _PATH_ATTRS, ";"), (query, _QUERY_ATTRS, "&")):
            for item in filter(None, part.split(sep)):
                name, eq, value = item.partition("=")
                if not eq or name not in allowed or name in values:
                    raise Pkcs11Error(f"PKCS#11 URI attribute {name!r} is unknown, repeated or has no value")
                values[name] = urllib.parse.unquote(value, errors="strict")
        if "module-name" in values:
            raise Pkcs11Error("give the module by module-path (or the pkcs11_module setting), not module-name")
        if values.get("type", "secret-key") != "secret-key":
            raise Pkcs11Error("the key a PKCS#11 URI names here is an AES key: type=secret-key")
        slot = values.get("slot-id")
        if slot is not None and not slot.isdigit():
            raise Pkcs11Error("slot-id must be a decimal number")
        shown = text.split("?")[0]
        return cls(
            shown, values.get("token"), values.get("serial"), int(slot) if slot else None, values.get("object"),
            urllib.parse.unquote_to_bytes(_raw(text, "id")) if "id" in values else None, values.get("type"),
            values.get("module-path"), values.get("pin-value"), values.get("pin-source"),
        )

    def pin(self, fallback: str | None = None) -> str | None:
        """The user PIN: pin-value, else the first line of the pin-source file, else `fallback`."""
        if self.pin_value is not None:
            return self.pin_value
        if self.pin_source is not None:
            source = self.pin_source[len("file:"):] if self.pin_source.startswith("file:") else self.pin_source
            try:
                return Path(source).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise Pkcs11Error(f"pin-source {source}: {getattr(exc, 'strerror', None) or 'empty'}") from None
        return fallback


def _raw(text: str, name: str) -> str:
    """A path attribute's value still percent-encoded (an id is bytes, not text)."""
    for item in text[len("pkcs11:"):].split("?")[0].split(";"):
        if item.startswith(name + "="):
            return item[len(name) + 1:]
    return ""


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError:
        raise Pkcs11Error("PKCS#11 needs the python-pkcs11 package: pip install 's3proxy[hsm]'") from None
    return pkcs11


class _Module:
    """One loaded PKCS#11 library. `generation` grows each time it is re-initialised (sessions of an older
    generation are dead and are reopened by their Token)."""

    _loaded: dict[str, _Module] = {}
    _loading = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.generation = 0
        try:
            self.lib = _pkcs11().lib(path)
        except Pkcs11Error:
            raise
        except Exception as exc:
            raise Pkcs11Error(f"cannot load the PKCS#11 module {path}: {exc}") from None

    @classmethod
    def get(cls, path: str) -> _Module:
        with cls._loading:
            if path not in cls._loaded:
                cls._loaded[path] = cls(path)
            return cls._loaded[path]

    def recover(self, seen: int) -> None:
        """Re-initialise the library, unless another token did since generation `seen`."""
        with self.lock:
            if self.generation == seen:
                self.lib.reinitialize()
                self.generation += 1


def _find_token(module: _Module, uri: Pkcs11Uri) -> Any:
    """The token the URI names (NoSuchToken / MultipleTokensReturned from python-pkcs11 otherwise)."""
    p = _pkcs11()
    if uri.slot_id is not None:
        slots = [s for s in module.lib.get_slots(token_present=True) if s.slot_id == uri.slot_id]
        if not slots:
            raise p.NoSuchToken()
        token = slots[0].get_token()
        serial = token.serial.decode(errors="replace") if isinstance(token.serial, bytes) else str(token.serial)
        if (uri.token is not None and token.label != uri.token) or (uri.serial is not None and serial.strip() != uri.serial):
            raise p.NoSuchToken()
        return token
    return module.lib.get_token(token_label=uri.token, token_serial=uri.serial)


def token_present(module_path: str, uri: Pkcs11Uri) -> bool:
    """Whether exactly one token matches the URI (no login)."""
    p = _pkcs11()
    module = _Module.get(module_path)
    for attempt in range(2):
        try:
            _find_token(module, uri)
            return True
        except p.NoSuchToken:
            if attempt == 0:  # a token added since the module was loaded shows only after re-initialising it
                module.recover(module.generation)
        except p.MultipleTokensReturned:
            return False
    return False


class Token:
    """A logged-in read-write session on one token, reopened after the token comes back."""

    def __init__(self, module_path: str, uri: Pkcs11Uri, pin: str | None, what: str) -> None:
        if uri.token is None and uri.serial is None and uri.slot_id is None:
            raise Pkcs11Error(f"{what}: the PKCS#11 URI must name the token (token=, serial= or slot-id=)")
        if not pin:
            raise Pkcs11Error(f"{what}: no PIN for token {uri.text} (pin-value, pin-source, or the PIN setting)")
        self.uri = uri
        self.what = what
        self._module = _Module.get(module_path)
        self._pin = pin
        self._lock = threading.RLock()
        self._session: Any = None
        self._generation = -1
        self._failing = False
        with self._lock:
            self._open()  # a wrong PIN or a missing token is a configuration error: say so now

    def __repr__(self) -> str:
        return f"Token({self.uri.text}, {self.what})"

    def _open(self, rescanned: bool = False) -> None:
        p = _pkcs11()
        generation = self._module.generation
        try:
            token = _find_token(self._module, self.uri)
            self._session = token.open(user_pin=self._pin, rw=True)
        except p.NoSuchToken:
            if not rescanned:  # a token added since the module was loaded shows only after re-initialising it
                self._module.recover(generation)
                return self._open(rescanned=True)
            raise Pkcs11Error(f"{self.what}: no token matches {self.uri.text}", "token") from None
        except p.MultipleTokensReturned as exc:
            raise Pkcs11Error(f"{self.what}: no single token matches {self.uri.text} ({type(exc).__name__})") from None
        except p.PinIncorrect:
            raise Pkcs11Error(f"{self.what}: the PIN for token {self.uri.text} is incorrect", "pin") from None
        except p.PinLocked:
            raise Pkcs11Error(f"{self.what}: the user PIN of token {self.uri.text} is locked", "locked") from None
        self._generation = generation

    def run(self, fn: Callable[[Any], T]) -> T:
        """fn(session) with the session's lock held; one recovery (module re-initialised, logged in again) when the
        token has gone away, then TokenUnavailable."""
        p = _pkcs11()
        with self._lock:
            failure: BaseException | None = None
            for attempt in range(2):
                try:
                    if self._session is None or self._generation != self._module.generation:
                        self._open()
                    result = fn(self._session)
                except p.NoSuchKey:
                    raise
                except (p.PKCS11Error, Pkcs11Error) as exc:
                    self._session, failure = None, exc
                    if attempt == 0:
                        try:
                            self._module.recover(self._generation)
                            continue
                        except Exception as wedged:  # the library cannot even re-initialise: the token is away
                            failure = wedged
                    break
                if self._failing:
                    _log.warning("%s: PKCS#11 token %s is back", self.what, self.uri.text)
                    self._failing = False
                return result
            if not self._failing:
                _log.error("%s: PKCS#11 token %s is unavailable (%s); calls that need it fail until it is back",
                           self.what, self.uri.text, type(failure).__name__)
            self._failing = True
        raise TokenUnavailable()

    def find_aes(self, label: str | None, key_id: bytes | None) -> Any | None:
        """The token's AES key with this label and id (None: absent)."""
        p = _pkcs11()
        found: list[Any] = []

        def search(session: Any) -> None:
            attrs = {p.Attribute.CLASS: p.ObjectClass.SECRET_KEY, p.Attribute.KEY_TYPE: p.KeyType.AES}
            if label is not None:
                attrs[p.Attribute.LABEL] = label
            if key_id is not None:
                attrs[p.Attribute.ID] = key_id
            found.extend(session.get_objects(attrs))

        self.run(search)
        if len(found) > 1:
            raise Pkcs11Error(f"{self.what}: {len(found)} AES keys in {self.uri.text} match label {label!r}")
        return found[0] if found else None

    def generate_aes(self, label: str | None, key_id: bytes | None) -> None:
        """A new AES-256 token key usable for encrypt/decrypt only, sensitive and never extractable."""
        p = _pkcs11()
        template: dict[Any, bool | bytes] = {
            p.Attribute.SENSITIVE: True, p.Attribute.EXTRACTABLE: False, p.Attribute.ENCRYPT: True,
            p.Attribute.DECRYPT: True, p.Attribute.WRAP: False, p.Attribute.UNWRAP: False, p.Attribute.SIGN: False,
            p.Attribute.VERIFY: False, p.Attribute.DERIVE: False, p.Attribute.MODIFIABLE: False}
        if key_id is not None:
            template[p.Attribute.ID] = key_id
        self.run(lambda s: s.generate_key(p.KeyType.AES, 256, label=label, store=True, template=template))

    def destroy_aes(self, label: str, key_id: bytes) -> int:
        """Destroy the token's AES keys with this label and id; how many there were."""
        p = _pkcs11()

        def destroy(session: Any) -> int:
            found = list(session.get_objects({p.Attribute.CLASS: p.ObjectClass.SECRET_KEY, p.Attribute.KEY_TYPE: p.KeyType.AES,
                                              p.Attribute.LABEL: label, p.Attribute.ID: key_id}))
            for key in found:
                key.destroy()
            return len(found)

        return self.run(destroy)

    def random(self, size: int) -> bytes:
        """`size` random bytes from the token's generator."""
        return bytes(self.run(lambda s: s.generate_random(size * 8)))

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                except Exception:  # a session of a token that is gone: nothing more to close
                    pass
                self._session = None


class TokenAead:
    """One AES key of a token, with AESGCM's interface; the key's handle is looked up again per session."""

    def __init__(self, token: Token, label: str | None, key_id: bytes | None) -> None:
        self._token = token
        self._label = label
        self._id = key_id
        self._key: Any = None
        self._generation = -1

    def __repr__(self) -> str:
        return f"TokenAead({self._token.uri.text}, label={self._label!r})"

    def _call(self, decrypt: bool, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
        p = _pkcs11()

        def op(session: Any) -> bytes | None:
            if self._key is None or self._generation != self._token._generation:
                keys = list(session.get_objects({p.Attribute.CLASS: p.ObjectClass.SECRET_KEY,
                                                 p.Attribute.KEY_TYPE: p.KeyType.AES,
                                                 **({p.Attribute.LABEL: self._label} if self._label is not None else {}),
                                                 **({p.Attribute.ID: self._id} if self._id is not None else {})}))
                if len(keys) != 1:
                    raise p.NoSuchKey()
                self._key, self._generation = keys[0], self._token._generation
            params = p.GCMParams(nonce, aad or b"", 128)
            if not decrypt:
                return bytes(self._key.encrypt(data, mechanism=p.Mechanism.AES_GCM, mechanism_param=params))
            try:
                return bytes(self._key.decrypt(data, mechanism=p.Mechanism.AES_GCM, mechanism_param=params))
            except (p.GeneralError, p.EncryptedDataInvalid, p.EncryptedDataLenRange):
                # a tag that does not verify (SoftHSM says CKR_GENERAL_ERROR) or a token that is gone: reading the
                # key's type tells them apart (it fails too when the token or session is gone)
                self._key[p.Attribute.KEY_TYPE]
                return None

        try:
            out = self._token.run(op)
        except p.NoSuchKey:
            raise TokenUnavailable(f"The key {self._label!r} is not in PKCS#11 token {self._token.uri.text}.") from None
        if out is None:
            raise InvalidTag()
        return out

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return self._call(False, nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < 16:
            raise InvalidTag()
        return self._call(True, nonce, data, associated_data)


def root_aead(uri_text: str, module_path: str | None, pin: str | None, *, create: bool = True) -> TokenAead:
    """The root key in a token: the AES key the URI names (object= label and/or id=), generated inside the token
    on first start (as `root_key_file` is created on first start)."""
    uri = Pkcs11Uri.parse(uri_text)
    module = uri.module_path or module_path
    if not module:
        raise Pkcs11Error("root_key names a PKCS#11 token: give the module (module-path in the URI or pkcs11_module)")
    if uri.object is None and uri.id is None:
        raise Pkcs11Error("root_key: the PKCS#11 URI must name the key (object= and/or id=)")
    token = Token(module, uri, uri.pin(pin), "root key")
    if token.find_aes(uri.object, uri.id) is None:
        if not create:
            raise Pkcs11Error(f"root key: no AES key {uri.object!r} in token {uri.text}")
        token.generate_aes(uri.object, uri.id)
        _log.warning("generated the root key %r inside PKCS#11 token %s (non-extractable)", uri.object, uri.text)
    return TokenAead(token, uri.object, uri.id)
