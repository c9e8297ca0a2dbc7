"""Request authentication and body decoding for the S3 (and KMS JSON) front door.

The flow, for every request:

    ctx = sigv4.authenticate(method, raw_path, raw_query, request.headers, store, now=clock())
        -> who signed it (credential.user_name), which service (s3 | kms), the payload mode
    body = body.open_body(ctx, request.headers, request.content, want_md5=...)
        -> body.require_length() when the operation needs a length (PUT, UploadPart)
        -> async for piece in body: ...   completes only if every signature and digest matched
        -> body.md5_hex, body.checksums, body.checksum_algorithm, body.content_encoding

`credentials` holds the proxy's own access keys; `checksums` the flexible-checksum algorithms.
Nothing here logs, and no error or repr carries a secret key, a signing key or an SSE-C key.
"""
