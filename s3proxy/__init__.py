"""s3proxy: an S3-compatible proxy that encrypts every object before it reaches the backend.

The flow of a request:

    client -> http (route method+path+query to an S3 operation, render errors as XML)
           -> auth (SigV4 header or presigned query; aws-chunked bodies and checksums)
           -> ops (one coroutine per S3 operation)
           -> modes (SSE-S3 | SSE-C | SSE-KMS | client-side pass-through) seal/unseal the object key
                 -> kms (data keys; knows nothing of HTTP or S3)
           -> format (chunked AES-256-GCM, pure functions) via streams (async adapters)
           -> backends (local filesystem | any S3 endpoint over HTTP)

The KMS core is also served as the AWS KMS JSON API (X-Amz-Target: TrentService.*).
"""

__version__ = "0.1.0"
