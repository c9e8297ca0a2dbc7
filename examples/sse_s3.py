"""SSE-S3: the proxy encrypts, and the proxy alone holds and manages the key.

Every object gets its own random data key, wrapped by the proxy's internal service key (kept in
its keystore under the root key); no caller can see, use, disable or delete that key.

The same with awscli (after `s3proxy serve` printed the credentials to export):
    aws --endpoint-url http://127.0.0.1:8080 s3 mb s3://demo-sse-s3
    aws --endpoint-url http://127.0.0.1:8080 s3 cp secret.txt s3://demo-sse-s3/secret.txt --sse AES256
    aws --endpoint-url http://127.0.0.1:8080 s3api head-object --bucket demo-sse-s3 --key secret.txt
    aws --endpoint-url http://127.0.0.1:8080 s3 cp s3://demo-sse-s3/secret.txt -
    aws --endpoint-url http://127.0.0.1:8080 kms list-keys     # the key that protects it is not listed

Run: python3 examples/sse_s3.py [--endpoint URL] [--data-dir DIR | --backend-url URL ...]
"""

from __future__ import annotations

import base64

import demolib


def main(argv: list[str] | None = None) -> int:
    demo, data, bucket = demolib.start(__doc__, "sse-s3", argv)
    with demo:
        mode = demolib.SseS3(demo)
        held = demolib.walkthrough(demo, mode, bucket, "secret.txt", data)
        listed = [k["KeyArn"] for k in demo.kms.list_keys()["Keys"]]
        print(f"  who manages the key: KMS keys this user can see: {len(listed)}; none is the one that wrapped this object")
        if held is not None:
            wrapped = base64.b64decode(held.metadata["s3proxy-key"])
            result = demolib.outcome(lambda: demo.kms.decrypt(
                CiphertextBlob=wrapped, EncryptionContext={"aws:s3:arn": f"arn:aws:s3:::{bucket}/secret.txt"}))
            print(f"  this user's kms:Decrypt of the stored wrapped key: {result} (only the proxy can unwrap it)")
            print(f"  one byte flipped at rest, then GET: {demolib.tamper_and_read(demo, mode, bucket, 'secret.txt', data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
