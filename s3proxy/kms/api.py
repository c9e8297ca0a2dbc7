"""The AWS KMS JSON 1.1 API (`X-Amz-Target: TrentService.<Op>`) over the key service.

`KmsApi.dispatch(target, body, caller)` -> (HTTP status, JSON body). Shapes follow the botocore
`kms` service model: blobs are base64, timestamps epoch seconds, errors `{"__type", "message"}`.
The HTTP layer verifies SigV4 (service `kms`) and builds the Caller; this layer never sees secrets.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from .admin import KeyMetadata
from .caller import Caller
from .errors import (
    KmsError,
    SerializationException,
    UnknownOperationException,
    UnsupportedOperationException,
    ValidationException,
    member_error,
)
from .policy import Grant
from .registry import StoreRecord
from .service import KeyService

CONTENT_TYPE = "application/x-amz-json-1.1"
_log = logging.getLogger(__name__)
Handler = Callable[[KeyService, Caller, Mapping[str, Any]], dict[str, Any]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _blob(body: Mapping[str, Any], name: str, required: bool = True) -> bytes:
    value = body.get(name)
    if value is None:
        if required:
            raise member_error(name[0].lower() + name[1:], "not be null", None)
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise SerializationException(f"{name} is not valid base64.") from None


def _req(body: Mapping[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise member_error(name[0].lower() + name[1:], "not be null", None)
    return body[name]


def _page(items: list[Any], body: Mapping[str, Any], field: str, render: Callable[[Any], Any]) -> dict[str, Any]:
    limit = body.get("Limit", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValidationException("Limit must be between 1 and 1000.")
    start = int(body.get("Marker") or 0) if str(body.get("Marker") or "0").isdigit() else 0
    chunk = items[start : start + limit]
    out: dict[str, Any] = {field: [render(i) for i in chunk], "Truncated": start + limit < len(items)}
    if out["Truncated"]:
        out["NextMarker"] = str(start + limit)
    return out


def _present(out: dict[str, Any], **members: Any) -> dict[str, Any]:
    """`out` with each member that has a value (neither None nor an empty tuple); tuples become lists."""
    for name, value in members.items():
        if value is not None and value != ():
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def key_metadata_json(m: KeyMetadata) -> dict[str, Any]:
    out: dict[str, Any] = {
        "AWSAccountId": m.account_id, "KeyId": m.key_id, "Arn": m.arn, "CreationDate": m.creation_date,
        "Enabled": m.enabled, "Description": m.description, "KeyUsage": m.key_usage, "KeyState": m.key_state,
        "Origin": m.origin, "KeyManager": m.key_manager, "CustomerMasterKeySpec": m.key_spec, "KeySpec": m.key_spec,
        "MultiRegion": False, "CurrentKeyMaterialId": m.current_key_material_id,
    }
    _present(out, EncryptionAlgorithms=m.encryption_algorithms, SigningAlgorithms=m.signing_algorithms,
             MacAlgorithms=m.mac_algorithms, KeyAgreementAlgorithms=m.key_agreement_algorithms,
             ExpirationModel=m.expiration_model, ValidTo=m.valid_to, CustomKeyStoreId=m.custom_key_store_id,
             CloudHsmClusterId=m.cloud_hsm_cluster_id)
    if m.deletion_date is not None:
        out["DeletionDate"] = m.deletion_date
        out["PendingDeletionWindowInDays"] = m.pending_deletion_window_in_days
    return out


def _grant_json(g: Grant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "KeyId": g.key_id, "GrantId": g.grant_id, "CreationDate": g.created, "GranteePrincipal": g.grantee,
        "IssuingAccount": g.issuing_account, "Operations": list(g.operations),
    }
    if g.name:
        out["Name"] = g.name
    if g.retiring:
        out["RetiringPrincipal"] = g.retiring
    pairs = (("EncryptionContextEquals", g.context_equals), ("EncryptionContextSubset", g.context_subset))
    constraints = {k: v for k, v in pairs if v is not None}
    if constraints:
        out["Constraints"] = constraints
    return out


def _tags_in(body: Mapping[str, Any]) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in body.get("Tags") or []}


# --- handlers: one per operation, body dict in, response dict out ---------------------------------
def _create_key(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    if b.get("XksKeyId") is not None:
        raise UnsupportedOperationException("External key stores (XksKeyId) are not supported by this KMS.")
    m = s.create_key(
        c, description=b.get("Description", ""), key_usage=b.get("KeyUsage"),
        key_spec=b.get("KeySpec") or b.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT", policy=b.get("Policy"),
        tags=_tags_in(b), origin=b.get("Origin", "AWS_KMS"),
        bypass_policy_lockout_safety_check=bool(b.get("BypassPolicyLockoutSafetyCheck")),
        custom_key_store_id=b.get("CustomKeyStoreId"),
    )
    return {"KeyMetadata": key_metadata_json(m)}


def _encrypt(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    r = s.encrypt(c, _req(b, "KeyId"), _blob(b, "Plaintext"), b.get("EncryptionContext"),
                  b.get("EncryptionAlgorithm", "SYMMETRIC_DEFAULT"))
    return {"CiphertextBlob": _b64(r.ciphertext_blob), "KeyId": r.key_arn, "EncryptionAlgorithm": r.encryption_algorithm}


def _decrypt(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    r = s.decrypt(c, _blob(b, "CiphertextBlob"), b.get("EncryptionContext"), b.get("KeyId"), b.get("EncryptionAlgorithm"))
    return {"KeyId": r.key_arn, "Plaintext": _b64(r.plaintext), "EncryptionAlgorithm": r.encryption_algorithm,
            "KeyMaterialId": r.key_material_id}


def _re_encrypt(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    r = s.re_encrypt(
        c, _blob(b, "CiphertextBlob"), _req(b, "DestinationKeyId"), b.get("SourceEncryptionContext"),
        b.get("DestinationEncryptionContext"), b.get("SourceKeyId"), b.get("SourceEncryptionAlgorithm"),
        b.get("DestinationEncryptionAlgorithm", "SYMMETRIC_DEFAULT"),
    )
    return {"CiphertextBlob": _b64(r.ciphertext_blob), "SourceKeyId": r.source_key_arn, "KeyId": r.key_arn,
            "SourceEncryptionAlgorithm": r.source_encryption_algorithm,
            "DestinationEncryptionAlgorithm": r.destination_encryption_algorithm}


def _data_key(without: bool) -> Handler:
    def handle(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
        if b.get("KeySpec") is None and b.get("NumberOfBytes") is None:
            raise ValidationException("Please specify either number of bytes or key spec.")
        fn = s.generate_data_key_without_plaintext if without else s.generate_data_key
        d = fn(c, _req(b, "KeyId"), b.get("EncryptionContext"), b.get("KeySpec"), b.get("NumberOfBytes"))
        out = {"CiphertextBlob": _b64(d.ciphertext_blob), "KeyId": d.key_arn, "KeyMaterialId": d.key_material_id}
        if not without:
            out["Plaintext"] = _b64(d.plaintext)
        return out

    return handle


def _data_key_pair(without: bool) -> Handler:
    def handle(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
        fn = s.generate_data_key_pair_without_plaintext if without else s.generate_data_key_pair
        p = fn(c, _req(b, "KeyId"), _req(b, "KeyPairSpec"), b.get("EncryptionContext"))
        out = {"PrivateKeyCiphertextBlob": _b64(p.private_key_ciphertext_blob), "PublicKey": _b64(p.public_key),
               "KeyId": p.key_arn, "KeyPairSpec": p.key_pair_spec}
        if not without:
            out["PrivateKeyPlaintext"] = _b64(p.private_key_plaintext)
        return out

    return handle


def _sign(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    arn, sig = s.sign(c, _req(b, "KeyId"), _blob(b, "Message"), _req(b, "SigningAlgorithm"), b.get("MessageType", "RAW"))
    return {"KeyId": arn, "Signature": _b64(sig), "SigningAlgorithm": b["SigningAlgorithm"]}


def _verify(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    arn = s.verify(c, _req(b, "KeyId"), _blob(b, "Message"), _blob(b, "Signature"), _req(b, "SigningAlgorithm"),
                   b.get("MessageType", "RAW"))
    return {"KeyId": arn, "SignatureValid": True, "SigningAlgorithm": b["SigningAlgorithm"]}


def _get_public_key(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    p = s.get_public_key(c, _req(b, "KeyId"))
    out: dict[str, Any] = {"KeyId": p.key_arn, "PublicKey": _b64(p.public_key), "CustomerMasterKeySpec": p.key_spec,
                           "KeySpec": p.key_spec, "KeyUsage": p.key_usage}
    return _present(out, EncryptionAlgorithms=p.encryption_algorithms, SigningAlgorithms=p.signing_algorithms,
                    KeyAgreementAlgorithms=p.key_agreement_algorithms)


def _derive_shared_secret(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    if b.get("Recipient") is not None:
        raise UnsupportedOperationException("Recipient (Nitro Enclaves attestation) is not supported by this KMS.")
    r = s.derive_shared_secret(c, _req(b, "KeyId"), _req(b, "KeyAgreementAlgorithm"), _blob(b, "PublicKey"))
    return {"KeyId": r.key_arn, "SharedSecret": _b64(r.shared_secret), "KeyAgreementAlgorithm": r.key_agreement_algorithm,
            "KeyOrigin": r.key_origin}


def _get_parameters_for_import(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    p = s.get_parameters_for_import(c, _req(b, "KeyId"), _req(b, "WrappingAlgorithm"), _req(b, "WrappingKeySpec"))
    return {"KeyId": p.key_arn, "ImportToken": _b64(p.import_token), "PublicKey": _b64(p.public_key),
            "ParametersValidTo": p.parameters_valid_to}


def _timestamp(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SerializationException(f"{name} must be a timestamp in epoch seconds.")
    return float(value)


def _import_key_material(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    for name in ("KeyMaterialDescription", "KeyMaterialId"):  # several materials per key: not here
        if b.get(name) is not None:
            raise UnsupportedOperationException(f"{name} is not supported: this KMS imports one key material per key.")
    arn, material_id = s.import_key_material(
        c, _req(b, "KeyId"), _blob(b, "ImportToken"), _blob(b, "EncryptedKeyMaterial"), b.get("ExpirationModel"),
        _timestamp(b, "ValidTo"), b.get("ImportType"))
    return {"KeyId": arn, "KeyMaterialId": material_id}


def _delete_imported_key_material(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    arn, material_id = s.delete_imported_key_material(c, _req(b, "KeyId"), b.get("KeyMaterialId"))
    return {"KeyId": arn, "KeyMaterialId": material_id}


def _generate_mac(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    arn, mac = s.generate_mac(c, _req(b, "KeyId"), _blob(b, "Message"), _req(b, "MacAlgorithm"))
    return {"Mac": _b64(mac), "MacAlgorithm": b["MacAlgorithm"], "KeyId": arn}


def _verify_mac(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    arn = s.verify_mac(c, _req(b, "KeyId"), _blob(b, "Message"), _blob(b, "Mac"), _req(b, "MacAlgorithm"))
    return {"KeyId": arn, "MacValid": True, "MacAlgorithm": b["MacAlgorithm"]}


def _schedule_key_deletion(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    d = s.schedule_key_deletion(c, _req(b, "KeyId"), b.get("PendingWindowInDays", 30))
    return {"KeyId": d.key_arn, "DeletionDate": d.deletion_date, "KeyState": d.key_state,
            "PendingWindowInDays": d.pending_window_in_days}


def _rotation_status(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    r = s.get_key_rotation_status(c, _req(b, "KeyId"))
    return _present({"KeyRotationEnabled": r.enabled, "KeyId": r.key_arn}, RotationPeriodInDays=r.rotation_period_in_days,
                    NextRotationDate=r.next_rotation_date, OnDemandRotationStartDate=r.on_demand_rotation_start_date)


def _list_aliases(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    def render(a: Any) -> dict[str, Any]:
        out = {"AliasName": a.alias_name, "AliasArn": a.alias_arn}
        if a.target_key_id:
            out.update(TargetKeyId=a.target_key_id, CreationDate=a.creation_date, LastUpdatedDate=a.last_updated_date)
        return out

    return _page(s.list_aliases(c, b.get("KeyId")), b, "Aliases", render)


def _create_grant(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    gid, token = s.create_grant(c, _req(b, "KeyId"), _req(b, "GranteePrincipal"), _req(b, "Operations"),
                                b.get("RetiringPrincipal"), b.get("Constraints"), b.get("Name"))
    return {"GrantToken": token, "GrantId": gid}


# custom key stores: the members each operation takes; any other (the Xks* ones of external key stores) is refused
_STORE_MEMBERS = {
    "CreateCustomKeyStore": {"CustomKeyStoreName", "CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword",
                             "CustomKeyStoreType"},
    "UpdateCustomKeyStore": {"CustomKeyStoreId", "NewCustomKeyStoreName", "KeyStorePassword", "CloudHsmClusterId"},
}


def _store_members(op: str, b: Mapping[str, Any]) -> None:
    extra = sorted(set(b) - _STORE_MEMBERS[op])
    if any(name.startswith("Xks") for name in extra):
        raise UnsupportedOperationException("External key stores (the Xks* members) are not supported by this KMS.")
    if extra:
        raise ValidationException(f"{op} does not take {', '.join(extra)}.")


def _store_json(st: StoreRecord) -> dict[str, Any]:
    out = {"CustomKeyStoreId": st.store_id, "CustomKeyStoreName": st.name, "CloudHsmClusterId": st.cluster_id,
           "TrustAnchorCertificate": st.trust_anchor, "ConnectionState": st.connection_state,
           "CreationDate": st.created, "CustomKeyStoreType": st.store_type}
    return _present(out, ConnectionErrorCode=st.error_code if st.connection_state == "FAILED" else None)


def _create_custom_key_store(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    _store_members("CreateCustomKeyStore", b)
    return {"CustomKeyStoreId": s.create_custom_key_store(
        c, _req(b, "CustomKeyStoreName"), b.get("CloudHsmClusterId"), b.get("TrustAnchorCertificate"),
        b.get("KeyStorePassword"), b.get("CustomKeyStoreType"))}


def _update_custom_key_store(s: KeyService, c: Caller, b: Mapping[str, Any]) -> dict[str, Any]:
    _store_members("UpdateCustomKeyStore", b)
    s.update_custom_key_store(c, _req(b, "CustomKeyStoreId"), b.get("NewCustomKeyStoreName"), b.get("KeyStorePassword"),
                              b.get("CloudHsmClusterId"))
    return {}


_NONE: dict[str, Any] = {}
HANDLERS: dict[str, Handler] = {
    "CreateKey": _create_key,
    "DescribeKey": lambda s, c, b: {"KeyMetadata": key_metadata_json(s.describe_key(c, _req(b, "KeyId")))},
    "ListKeys": lambda s, c, b: _page(s.list_keys(c), b, "Keys", lambda k: {"KeyId": k[0], "KeyArn": k[1]}),
    "UpdateKeyDescription": lambda s, c, b: s.update_key_description(c, _req(b, "KeyId"), _req(b, "Description")) or _NONE,
    "EnableKey": lambda s, c, b: s.enable_key(c, _req(b, "KeyId")) or _NONE,
    "DisableKey": lambda s, c, b: s.disable_key(c, _req(b, "KeyId")) or _NONE,
    "ScheduleKeyDeletion": _schedule_key_deletion,
    "CancelKeyDeletion": lambda s, c, b: {"KeyId": s.cancel_key_deletion(c, _req(b, "KeyId"))},
    "CreateAlias": lambda s, c, b: s.create_alias(c, _req(b, "AliasName"), _req(b, "TargetKeyId")) or _NONE,
    "UpdateAlias": lambda s, c, b: s.update_alias(c, _req(b, "AliasName"), _req(b, "TargetKeyId")) or _NONE,
    "DeleteAlias": lambda s, c, b: s.delete_alias(c, _req(b, "AliasName")) or _NONE,
    "ListAliases": _list_aliases,
    "EnableKeyRotation": lambda s, c, b: s.enable_key_rotation(c, _req(b, "KeyId"), b.get("RotationPeriodInDays", 365)) or _NONE,
    "DisableKeyRotation": lambda s, c, b: s.disable_key_rotation(c, _req(b, "KeyId")) or _NONE,
    "GetKeyRotationStatus": _rotation_status,
    "RotateKeyOnDemand": lambda s, c, b: {"KeyId": s.rotate_key_on_demand(c, _req(b, "KeyId"))},
    "ListKeyRotations": lambda s, c, b: _page(s.list_key_rotations(c, _req(b, "KeyId")), b, "Rotations", lambda r: {
        "KeyId": r.key_id, "KeyMaterialId": r.key_material_id, "RotationDate": r.rotation_date, "RotationType": r.rotation_type}),
    "GenerateDataKey": _data_key(False),
    "GenerateDataKeyWithoutPlaintext": _data_key(True),
    "GenerateDataKeyPair": _data_key_pair(False),
    "GenerateDataKeyPairWithoutPlaintext": _data_key_pair(True),
    "Encrypt": _encrypt,
    "Decrypt": _decrypt,
    "ReEncrypt": _re_encrypt,
    "GenerateRandom": lambda s, c, b: {"Plaintext": _b64(s.generate_random(c, _req(b, "NumberOfBytes"),
                                                                           b.get("CustomKeyStoreId")))},
    "Sign": _sign,
    "Verify": _verify,
    "GetPublicKey": _get_public_key,
    "DeriveSharedSecret": _derive_shared_secret,
    "GetParametersForImport": _get_parameters_for_import,
    "ImportKeyMaterial": _import_key_material,
    "DeleteImportedKeyMaterial": _delete_imported_key_material,
    "GenerateMac": _generate_mac,
    "VerifyMac": _verify_mac,
    "PutKeyPolicy": lambda s, c, b: s.put_key_policy(c, _req(b, "KeyId"), _req(b, "Policy"), b.get("PolicyName", "default"),
                                                     bool(b.get("BypassPolicyLockoutSafetyCheck"))) or _NONE,
    "GetKeyPolicy": lambda s, c, b: {"Policy": s.get_key_policy(c, _req(b, "KeyId"), b.get("PolicyName", "default")),
                                     "PolicyName": b.get("PolicyName", "default")},
    "ListKeyPolicies": lambda s, c, b: _page(s.list_key_policies(c, _req(b, "KeyId")), b, "PolicyNames", str),
    "CreateGrant": _create_grant,
    "ListGrants": lambda s, c, b: _page(s.list_grants(c, _req(b, "KeyId"), b.get("GrantId"), b.get("GranteePrincipal")),
                                        b, "Grants", _grant_json),
    "RetireGrant": lambda s, c, b: s.retire_grant(c, b.get("GrantToken"), b.get("KeyId"), b.get("GrantId")) or _NONE,
    "RevokeGrant": lambda s, c, b: s.revoke_grant(c, _req(b, "KeyId"), _req(b, "GrantId")) or _NONE,
    "TagResource": lambda s, c, b: s.tag_resource(c, _req(b, "KeyId"), _tags_in(b)) or _NONE,
    "UntagResource": lambda s, c, b: s.untag_resource(c, _req(b, "KeyId"), _req(b, "TagKeys")) or _NONE,
    "CreateCustomKeyStore": _create_custom_key_store,
    "DescribeCustomKeyStores": lambda s, c, b: _page(
        s.describe_custom_key_stores(c, b.get("CustomKeyStoreId"), b.get("CustomKeyStoreName")), b, "CustomKeyStores",
        _store_json),
    "ConnectCustomKeyStore": lambda s, c, b: s.connect_custom_key_store(c, _req(b, "CustomKeyStoreId")) or _NONE,
    "DisconnectCustomKeyStore": lambda s, c, b: s.disconnect_custom_key_store(c, _req(b, "CustomKeyStoreId")) or _NONE,
    "UpdateCustomKeyStore": _update_custom_key_store,
    "DeleteCustomKeyStore": lambda s, c, b: s.delete_custom_key_store(c, _req(b, "CustomKeyStoreId")) or _NONE,
    "ListResourceTags": lambda s, c, b: _page(sorted(s.list_resource_tags(c, _req(b, "KeyId")).items()), b, "Tags",
                                              lambda t: {"TagKey": t[0], "TagValue": t[1]}),
}


def error_body(error: KmsError) -> bytes:
    return json.dumps({"__type": error.code, "message": error.text}).encode()


class KmsApi:
    """TrentService JSON dispatch; returns (status, body) with Content-Type `CONTENT_TYPE`."""

    def __init__(self, service: KeyService) -> None:
        self.service = service

    def dispatch(self, target: str, body: bytes, caller: Caller) -> tuple[int, bytes]:
        prefix, _, op = target.partition(".")
        handler = HANDLERS.get(op) if prefix == "TrentService" else None
        try:
            if handler is None:
                raise UnknownOperationException(f"Unknown operation {target}")
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise SerializationException() from None
            if not isinstance(request, dict):
                raise SerializationException()
            if request.get("DryRun"):
                raise UnsupportedOperationException("DryRun is not supported by this KMS.")
            return 200, json.dumps(handler(self.service, caller, request)).encode()
        except KmsError as exc:
            return exc.status, error_body(exc)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:  # malformed member types
            _log.info("kms %s: bad request shape (%s)", op, type(exc).__name__)
            return 400, error_body(ValidationException("The request does not match the operation's input shape."))
        except Exception:  # a bug or a keystore failure: logged with its traceback, never its arguments
            _log.exception("kms %s failed", op)
            internal = KmsError()
            return internal.status, error_body(internal)
