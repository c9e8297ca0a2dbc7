"""SSE-KMS: the proxy encrypts, under a KMS key that the client owns and manages through the KMS API.

Each object's data key comes from KMS GenerateDataKey under your key, bound to the object's ARN by
the encryption context; every GET asks KMS to Decrypt it, as you, so disabling the key, scheduling
its deletion or a key policy that denies you stop every read at once. All of it is in the audit log.

The same with awscli:
    KEY=$(aws --endpoint-url http://127.0.0.1:8080 kms create-key --query KeyMetadata.KeyId --output text)
    aws --endpoint-url http://127.0.0.1:8080 s3 mb s3://demo-sse-kms
    aws --endpoint-url http://127.0.0.1:8080 s3 cp secret.txt s3://demo-sse-kms/secret.txt \\
        --sse aws:kms --sse-kms-key-id "$KEY"
    aws --endpoint-url http://127.0.0.1:8080 kms disable-key --key-id "$KEY"
    aws --endpoint-url http://127.0.0.1:8080 s3 cp s3://demo-sse-kms/secret.txt -   # KMS.DisabledException
    aws --endpoint-url http://127.0.0.1:8080 kms enable-key --key-id "$KEY"
    s3proxy audit verify                                                             # the calls, hash-chained

Run: python3 examples/sse_kms.py [--endpoint URL] [--data-dir DIR | --backend-url URL ...]
"""

from __future__ import annotations

import demolib


def main(argv: list[str] | None = None) -> int:
    demo, data, bucket = demolib.start(__doc__, "sse-kms", argv)
    with demo:
        mode = demolib.SseKms(demo, demolib.new_kms_key(demo, "s3proxy demo: SSE-KMS"))
        held = demolib.walkthrough(demo, mode, bucket, "secret.txt", data)
        for situation, result in demolib.key_failures(demo, mode.key_id, lambda: mode.get(bucket, "secret.txt")).items():
            print(f"  GET when {situation}: {result}")
        if held is not None:
            print(f"  one byte flipped at rest, then GET: {demolib.tamper_and_read(demo, mode, bucket, 'secret.txt', data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
