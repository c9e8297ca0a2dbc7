"""What a policy may name: the actions of each service, the condition keys and their types, per kind of policy.

A policy that names anything outside its kind's vocabulary is refused when it is put: a misspelt
action or condition key in a Deny would otherwise never match, and the Deny would silently fail
open. Action names are the IAM service authorization reference's (case-insensitive); condition
key names are case-insensitive too, except the part after a key prefix (`kms:EncryptionContext:`,
`s3:ExistingObjectTag/`, ...), which names a context key or a tag and is case-sensitive.

Each key has a type (the condition operators it may be compared with) and is single- or
multivalued (multivalued keys need `ForAllValues:` / `ForAnyValue:`). Keys marked `always` are
present in every request this proxy evaluates; the engine treats a request that lacks one as a
plumbing fault and evaluates that condition fail-closed instead of as "absent".
"""

from __future__ import annotations

from dataclasses import dataclass

# the operator families a key's type admits (String* is admitted for every key)
STRING, NUMERIC, DATE, BOOL, IP, ARN = "String", "Numeric", "Date", "Bool", "Ip", "Arn"

KMS_ACTIONS = frozenset(a.lower() for a in (
    "CancelKeyDeletion", "ConnectCustomKeyStore", "CreateAlias", "CreateCustomKeyStore", "CreateGrant", "CreateKey",
    "Decrypt", "DeleteAlias", "DeleteCustomKeyStore", "DeleteImportedKeyMaterial", "DeriveSharedSecret",
    "DescribeCustomKeyStores", "DescribeKey", "DisableKey", "DisableKeyRotation", "DisconnectCustomKeyStore",
    "EnableKey", "EnableKeyRotation", "Encrypt", "GenerateDataKey", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext", "GenerateMac", "GenerateRandom",
    "GetKeyPolicy", "GetKeyRotationStatus", "GetParametersForImport", "GetPublicKey", "ImportKeyMaterial",
    "ListAliases", "ListGrants", "ListKeyPolicies", "ListKeyRotations", "ListKeys", "ListResourceTags",
    "ListRetirableGrants", "PutKeyPolicy", "ReEncryptFrom", "ReEncryptTo", "ReplicateKey", "RetireGrant",
    "RevokeGrant", "RotateKeyOnDemand", "ScheduleKeyDeletion", "Sign", "SynchronizeMultiRegionKey", "TagResource",
    "UntagResource", "UpdateAlias", "UpdateCustomKeyStore", "UpdateKeyDescription", "UpdatePrimaryRegion", "Verify",
    "VerifyMac",
))

S3_ACTIONS = frozenset(a.lower() for a in (
    "AbortMultipartUpload", "BypassGovernanceRetention", "CreateAccessPoint", "CreateBucket", "CreateJob",
    "CreateMultiRegionAccessPoint", "CreateSession", "DeleteAccessPoint", "DeleteAccessPointPolicy", "DeleteBucket",
    "DeleteBucketOwnershipControls", "DeleteBucketPolicy", "DeleteBucketWebsite", "DeleteJobTagging",
    "DeleteObject", "DeleteObjectTagging", "DeleteObjectVersion", "DeleteObjectVersionTagging",
    "DeleteStorageLensConfiguration", "DescribeJob", "GetAccelerateConfiguration", "GetAccessPoint",
    "GetAccessPointPolicy", "GetAccountPublicAccessBlock", "GetAnalyticsConfiguration", "GetBucketAcl",
    "GetBucketCORS", "GetBucketLocation", "GetBucketLogging", "GetBucketNotification",
    "GetBucketObjectLockConfiguration", "GetBucketOwnershipControls", "GetBucketPolicy", "GetBucketPolicyStatus",
    "GetBucketPublicAccessBlock", "GetBucketRequestPayment", "GetBucketTagging", "GetBucketVersioning",
    "GetBucketWebsite", "GetEncryptionConfiguration", "GetIntelligentTieringConfiguration",
    "GetInventoryConfiguration", "GetLifecycleConfiguration", "GetMetricsConfiguration", "GetObject",
    "GetObjectAcl", "GetObjectAttributes", "GetObjectLegalHold", "GetObjectRetention", "GetObjectTagging",
    "GetObjectTorrent", "GetObjectVersion", "GetObjectVersionAcl", "GetObjectVersionAttributes",
    "GetObjectVersionForReplication", "GetObjectVersionTagging", "GetObjectVersionTorrent",
    "GetReplicationConfiguration", "ListAccessPoints", "ListAllMyBuckets", "ListBucket",
    "ListBucketMultipartUploads", "ListBucketVersions", "ListJobs", "ListMultipartUploadParts",
    "PutAccelerateConfiguration", "PutAccountPublicAccessBlock", "PutAnalyticsConfiguration", "PutBucketAcl",
    "PutBucketCORS", "PutBucketLogging", "PutBucketNotification", "PutBucketObjectLockConfiguration",
    "PutBucketOwnershipControls", "PutBucketPolicy", "PutBucketPublicAccessBlock", "PutBucketRequestPayment",
    "PutBucketTagging", "PutBucketVersioning", "PutBucketWebsite", "PutEncryptionConfiguration",
    "PutIntelligentTieringConfiguration", "PutInventoryConfiguration", "PutLifecycleConfiguration",
    "PutMetricsConfiguration", "PutObject", "PutObjectAcl", "PutObjectLegalHold", "PutObjectRetention",
    "PutObjectTagging", "PutObjectVersionAcl", "PutObjectVersionTagging", "PutReplicationConfiguration",
    "ReplicateDelete", "ReplicateObject", "ReplicateTags", "RestoreObject", "UpdateJobPriority", "UpdateJobStatus",
))

ACTIONS = {"kms": KMS_ACTIONS, "s3": S3_ACTIONS}


@dataclass(frozen=True)
class KeySpec:
    """One condition key: its type, whether it may hold several values, whether every request has it."""

    name: str  # canonical spelling, for messages
    types: tuple[str, ...]  # the operator families it may be compared with, besides String and Null
    multi: bool = False
    always: bool = False


def _keys(*specs: KeySpec) -> dict[str, KeySpec]:
    return {s.name.lower(): s for s in specs}


GLOBAL_KEYS = _keys(
    KeySpec("aws:CurrentTime", (DATE,), always=True),
    KeySpec("aws:EpochTime", (DATE, NUMERIC), always=True),
    KeySpec("aws:SecureTransport", (BOOL,), always=True),
    KeySpec("aws:SourceIp", (IP,)),  # absent when the proxy itself is the caller
    KeySpec("aws:RequestedRegion", (STRING,), always=True),
    KeySpec("aws:PrincipalArn", (ARN,), always=True),
    KeySpec("aws:PrincipalAccount", (STRING,), always=True),
    KeySpec("aws:PrincipalType", (STRING,), always=True),
    KeySpec("aws:username", (STRING,), always=True),  # every principal here is an IAM user
    KeySpec("aws:userid", (STRING,), always=True),
    KeySpec("aws:UserAgent", (STRING,)),
    KeySpec("aws:ViaAWSService", (BOOL,), always=True),
    KeySpec("aws:MultiFactorAuthPresent", (BOOL,)),  # absent: access keys carry no MFA, as in AWS
)
# keys written as a prefix and a case-sensitive name: prefix (lowercased) -> spec
KMS_KEYS = _keys(
    KeySpec("kms:EncryptionContextKeys", (STRING,), multi=True),
    KeySpec("kms:CallerAccount", (STRING,), always=True),
    KeySpec("kms:ViaService", (STRING,)),
    KeySpec("kms:GrantOperations", (STRING,), multi=True),
    KeySpec("kms:GranteePrincipal", (STRING,)),
    KeySpec("kms:RetiringPrincipal", (STRING,)),
    KeySpec("kms:GrantIsForAWSResource", (BOOL,)),
    KeySpec("kms:GrantConstraintType", (STRING,)),
    KeySpec("kms:KeySpec", (STRING,)),
    KeySpec("kms:KeyUsage", (STRING,)),
    KeySpec("kms:KeyOrigin", (STRING,)),
    KeySpec("kms:BypassPolicyLockoutSafetyCheck", (BOOL,)),
)
KMS_PREFIXES = {"kms:encryptioncontext:": KeySpec("kms:EncryptionContext:", (STRING,))}
S3_KEYS = _keys(
    KeySpec("s3:x-amz-server-side-encryption", (STRING,)),
    KeySpec("s3:x-amz-server-side-encryption-aws-kms-key-id", (ARN,)),
    KeySpec("s3:x-amz-server-side-encryption-customer-algorithm", (STRING,)),
    KeySpec("s3:prefix", (STRING,)),
    KeySpec("s3:delimiter", (STRING,)),
    KeySpec("s3:max-keys", (NUMERIC,)),
    KeySpec("s3:RequestObjectTagKeys", (STRING,), multi=True),
)
S3_PREFIXES = {
    "s3:existingobjecttag/": KeySpec("s3:ExistingObjectTag/", (STRING,)),
    "s3:requestobjecttag/": KeySpec("s3:RequestObjectTag/", (STRING,)),
}


@dataclass(frozen=True)
class Vocabulary:
    """The condition keys one kind of policy may test."""

    keys: dict[str, KeySpec]
    prefixes: dict[str, KeySpec]

    def lookup(self, name: str) -> tuple[str, KeySpec] | None:
        """(normalized name, spec) of a condition key, or None when this vocabulary does not know it."""
        low = name.lower()
        spec = self.keys.get(low)
        if spec is not None:
            return low, spec
        for prefix, spec in self.prefixes.items():
            if low.startswith(prefix) and len(name) > len(prefix):
                return prefix + name[len(prefix):], spec
        return None


def normalize_key(name: str) -> str:
    """The spelling request contexts use for a condition key: lowercase, the name after a prefix kept."""
    low = name.lower()
    for prefix in (*KMS_PREFIXES, *S3_PREFIXES):
        if low.startswith(prefix):
            return prefix + name[len(prefix):]
    return low


@dataclass(frozen=True)
class Grammar:
    """One kind of policy: who it names, what it may act on, which actions and keys it may use."""

    name: str  # "key policy", "identity policy", "bucket policy"
    services: tuple[str, ...]  # whose actions it may name
    vocabulary: Vocabulary
    principals: bool  # resource policies name principals; identity policies must not
    star_resource_only: bool = False  # key policies: Resource "*" (this key) and nothing else
    max_bytes: int = 32768

    @property
    def a(self) -> str:
        """The name with its article, for messages: "a key policy", "an identity policy"."""
        return ("an " if self.name[0] in "aeiou" else "a ") + self.name


KEY_POLICY = Grammar("key policy", ("kms",), Vocabulary({**GLOBAL_KEYS, **KMS_KEYS}, KMS_PREFIXES),
                     principals=True, star_resource_only=True)
IDENTITY_POLICY = Grammar("identity policy", ("s3", "kms"),
                          Vocabulary({**GLOBAL_KEYS, **KMS_KEYS, **S3_KEYS}, {**KMS_PREFIXES, **S3_PREFIXES}),
                          principals=False, max_bytes=6144)
BUCKET_POLICY = Grammar("bucket policy", ("s3",), Vocabulary({**GLOBAL_KEYS, **S3_KEYS}, S3_PREFIXES),
                        principals=True, max_bytes=20480)
