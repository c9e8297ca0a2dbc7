"""The S3 error tree: every error a client can see, with its AWS code, HTTP status and message.

Lower layers (format, kms, backends) raise their own exceptions; `to_s3_error` is the one table
that maps them onto this tree. The HTTP layer renders an S3Error as AWS's XML error document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self


class S3Error(Exception):
    """An error with an S3 wire form. Subclasses set code, status and message on the class."""

    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(
        self,
        message: str | None = None,
        *,
        resource: str | None = None,
        headers: Mapping[str, str] | None = None,
        **fields: str,
    ) -> None:
        self.text = message or type(self).message
        self.resource = resource
        self.headers = dict(headers or {})
        # extra XML elements AWS adds to some errors (BucketName, Key, ArgumentName, ...)
        self.fields = {k: str(v) for k, v in fields.items()}
        super().__init__(self.text)

    def with_fields(self, fields: Mapping[str, str]) -> Self:
        """This error with more extra elements: for names that are not Python identifiers (X-Amz-Expires),
        or names chosen at run time."""
        self.fields.update({k: str(v) for k, v in fields.items()})
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.status}, {self.text!r})"


def _error(name: str, code: str, status: int, message: str) -> type[S3Error]:
    return type(name, (S3Error,), {"code": code, "status": status, "message": message, "__module__": __name__})


# (class name, code, status, default message) as AWS documents them in "Error responses" (S3 API reference).
_TABLE = [
    ("AccessDenied", "AccessDenied", 403, "Access Denied"),
    ("AccessControlListNotSupported", "AccessControlListNotSupported", 400, "The bucket does not allow ACLs"),
    ("AuthorizationHeaderMalformed", "AuthorizationHeaderMalformed", 400, "The authorization header is malformed."),
    ("AuthorizationQueryParametersError", "AuthorizationQueryParametersError", 400, "Error parsing the X-Amz-Credential parameter."),
    ("BadDigest", "BadDigest", 400, "The Content-MD5 or checksum value that you specified did not match what the server received."),
    ("BucketAlreadyExists", "BucketAlreadyExists", 409, "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."),
    ("BucketAlreadyOwnedByYou", "BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it."),
    ("BucketNotEmpty", "BucketNotEmpty", 409, "The bucket you tried to delete is not empty"),
    ("ConditionalRequestConflict", "ConditionalRequestConflict", 409, "A conflicting conditional operation is currently in progress against this resource. Please try again."),
    ("EntityTooLarge", "EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size"),
    ("EntityTooSmall", "EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size."),
    ("IllegalVersioningConfiguration", "IllegalVersioningConfigurationException", 400, "The versioning configuration specified in the request is invalid."),
    ("IllegalLocationConstraint", "IllegalLocationConstraintException", 400, "The specified location constraint is not valid."),
    ("IncompleteBody", "IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    ("InternalError", "InternalError", 500, "We encountered an internal error. Please try again."),
    ("InvalidAccessKeyId", "InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records."),
    ("InvalidArgument", "InvalidArgument", 400, "Invalid Argument"),
    ("InvalidBucketAclWithObjectOwnership", "InvalidBucketAclWithObjectOwnership", 400, "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"),
    ("InvalidBucketName", "InvalidBucketName", 400, "The specified bucket is not valid."),
    ("InvalidBucketState", "InvalidBucketState", 409, "The request is not valid with the current state of the bucket."),
    ("InvalidChunkSize", "InvalidChunkSizeError", 403, "Only the last chunk is allowed to have a size less than 8192 bytes"),
    ("InvalidDigest", "InvalidDigest", 400, "The Content-MD5 you specified is not valid."),
    ("InvalidEncryptionAlgorithm", "InvalidEncryptionAlgorithmError", 400, "The Encryption request you specified is not valid. Supported value: AES256."),
    ("InvalidObjectState", "InvalidObjectState", 403, "The operation is not valid for the current state of the object."),
    ("InvalidPolicyDocument", "InvalidPolicyDocument", 400, "The content of the form does not meet the conditions specified in the policy document."),
    ("InvalidPart", "InvalidPart", 400, "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."),
    ("InvalidPartOrder", "InvalidPartOrder", 400, "The list of parts was not in ascending order. The parts list must be specified in order by part number."),
    ("InvalidPartNumber", "InvalidPartNumber", 416, "The requested partnumber is not satisfiable"),
    ("InvalidRange", "InvalidRange", 416, "The requested range is not satisfiable"),
    ("InvalidRequest", "InvalidRequest", 400, "Invalid Request"),
    ("InvalidStorageClass", "InvalidStorageClass", 400, "The storage class you specified is not valid"),
    ("InvalidURI", "InvalidURI", 400, "Couldn't parse the specified URI."),
    ("InvalidTag", "InvalidTag", 400, "The tag provided was not a valid tag."),
    ("KeyTooLongError", "KeyTooLongError", 400, "Your key is too long"),
    ("MalformedTrailer", "MalformedTrailerError", 400, "The request contained trailing data that was not well-formed or did not conform to our published schema."),
    ("MalformedPOSTRequest", "MalformedPOSTRequest", 400, "The body of your POST request is not well-formed multipart/form-data."),
    ("MalformedPolicy", "MalformedPolicy", 400, "Policies must be valid JSON and the first byte must be '{'"),
    ("MalformedACLError", "MalformedACLError", 400, "The XML you provided was not well-formed or did not validate against our published schema"),
    ("MalformedXML", "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"),
    ("MaxPostPreDataLengthExceeded", "MaxPostPreDataLengthExceeded", 400, "Your POST request fields preceeding the upload file was too large."),
    ("MetadataTooLarge", "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size"),
    ("MethodNotAllowed", "MethodNotAllowed", 405, "The specified method is not allowed against this resource."),
    ("MissingContentLength", "MissingContentLength", 411, "You must provide the Content-Length HTTP header."),
    ("MissingSecurityHeader", "MissingSecurityHeader", 400, "Your request was missing a required header"),
    ("NoSuchBucket", "NoSuchBucket", 404, "The specified bucket does not exist"),
    ("NoSuchBucketPolicy", "NoSuchBucketPolicy", 404, "The bucket policy does not exist"),
    ("NoSuchKey", "NoSuchKey", 404, "The specified key does not exist."),
    ("NoSuchPublicAccessBlockConfiguration", "NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found"),
    ("NoSuchTagSet", "NoSuchTagSet", 404, "The TagSet does not exist"),
    ("NoSuchUpload", "NoSuchUpload", 404, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."),
    ("NoSuchVersion", "NoSuchVersion", 404, "The specified version does not exist."),
    ("NotImplemented", "NotImplemented", 501, "A header you provided implies functionality that is not implemented"),
    ("NotModified", "NotModified", 304, "Not Modified"),
    ("OperationAborted", "OperationAborted", 409, "A conflicting conditional operation is currently in progress against this resource. Please try again."),
    ("PreconditionFailed", "PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"),
    ("RequestTimeTooSkewed", "RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large."),
    ("RequestTimeout", "RequestTimeout", 400, "Your socket connection to the server was not read from or written to within the timeout period."),
    ("ServiceUnavailable", "ServiceUnavailable", 503, "Please reduce your request rate."),
    ("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."),
    ("SlowDown", "SlowDown", 503, "Please reduce your request rate."),
    ("UnexpectedContent", "UnexpectedContent", 400, "This request does not support content"),
    ("XAmzContentSHA256Mismatch", "XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
]

for _name, _code, _status, _message in _TABLE:
    globals()[_name] = _error(_name, _code, _status, _message)

# Names for static analysis; the classes above are created from _TABLE.
AccessDenied: type[S3Error]
AuthorizationHeaderMalformed: type[S3Error]
AuthorizationQueryParametersError: type[S3Error]
BadDigest: type[S3Error]
BucketAlreadyExists: type[S3Error]
BucketAlreadyOwnedByYou: type[S3Error]
BucketNotEmpty: type[S3Error]
ConditionalRequestConflict: type[S3Error]
EntityTooLarge: type[S3Error]
EntityTooSmall: type[S3Error]
IllegalVersioningConfiguration: type[S3Error]
IllegalLocationConstraint: type[S3Error]
IncompleteBody: type[S3Error]
InternalError: type[S3Error]
InvalidAccessKeyId: type[S3Error]
InvalidArgument: type[S3Error]
InvalidBucketName: type[S3Error]
InvalidBucketState: type[S3Error]
InvalidChunkSize: type[S3Error]
InvalidDigest: type[S3Error]
InvalidEncryptionAlgorithm: type[S3Error]
InvalidObjectState: type[S3Error]
InvalidPart: type[S3Error]
InvalidPolicyDocument: type[S3Error]
InvalidPartOrder: type[S3Error]
InvalidPartNumber: type[S3Error]
InvalidRange: type[S3Error]
InvalidRequest: type[S3Error]
InvalidStorageClass: type[S3Error]
InvalidTag: type[S3Error]
InvalidURI: type[S3Error]
KeyTooLongError: type[S3Error]
MalformedTrailer: type[S3Error]
MalformedPOSTRequest: type[S3Error]
MalformedXML: type[S3Error]
MaxPostPreDataLengthExceeded: type[S3Error]
MetadataTooLarge: type[S3Error]
MethodNotAllowed: type[S3Error]
MissingContentLength: type[S3Error]
MissingSecurityHeader: type[S3Error]
NoSuchBucket: type[S3Error]
NoSuchKey: type[S3Error]
NoSuchTagSet: type[S3Error]
NoSuchUpload: type[S3Error]
NoSuchVersion: type[S3Error]
NotImplemented: type[S3Error]
NotModified: type[S3Error]
PreconditionFailed: type[S3Error]
RequestTimeTooSkewed: type[S3Error]
RequestTimeout: type[S3Error]
ServiceUnavailable: type[S3Error]
SignatureDoesNotMatch: type[S3Error]
SlowDown: type[S3Error]
XAmzContentSHA256Mismatch: type[S3Error]
AccessControlListNotSupported: type[S3Error]
InvalidBucketAclWithObjectOwnership: type[S3Error]
MalformedPolicy: type[S3Error]
NoSuchBucketPolicy: type[S3Error]
NoSuchPublicAccessBlockConfiguration: type[S3Error]
OperationAborted: type[S3Error]
MalformedACLError: type[S3Error]
UnexpectedContent: type[S3Error]

BY_CODE: dict[str, type[S3Error]] = {cls.code: cls for cls in S3Error.__subclasses__()}


def from_code(code: str, status: int, message: str | None = None) -> S3Error:
    """An S3Error for a code seen on the wire (e.g. from an S3 backend), keeping its status."""
    cls = BY_CODE.get(code)
    if cls is None or cls.status != status:
        cls = type(code, (S3Error,), {"code": code, "status": status, "message": message or code})
    return cls(message)


def to_s3_error(exc: BaseException) -> S3Error | None:
    """The one table from lower-layer errors to what an S3 client sees; None when unmapped."""
    from .format.errors import IntegrityError
    from .format.ranges import RangeNotSatisfiable
    from .kms.errors import KmsError

    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, IntegrityError):
        # says nothing about which check failed (docs/FORMAT.md); the request id ties it to the log
        return InternalError("The stored object failed its integrity check and was not returned.")  # noqa: F821 (from _TABLE)
    if isinstance(exc, RangeNotSatisfiable):
        return InvalidRange(ActualObjectSize=str(exc.size), RangeRequested=exc.requested)  # noqa: F821 (from _TABLE)
    if isinstance(exc, KmsError):
        if exc.code == "AccessDeniedException":
            return AccessDenied(exc.text)  # noqa: F821 (from _TABLE)
        return from_code("KMS." + exc.code, exc.status if exc.status < 500 else 500, exc.text)
    return None
