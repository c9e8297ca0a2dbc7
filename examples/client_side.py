"""Client-side encryption: this process encrypts before sending; the proxy only ever sees ciphertext.

`s3proxy.cse` writes the AWS S3 Encryption Client's v3 format (key-committing AES-256-GCM); the
data key is wrapped by a KMS key (here: the proxy's own KMS API, as any AWS KMS) and stored in the
object's metadata. A reader with S3 access but without the key gets ciphertext, which the proxy
marks with `x-s3proxy-client-side-encryption`. (The proxy still adds its own SSE-S3 layer at rest.)

The same with the CLI (KMS calls go to the same endpoint unless --kms-endpoint-url says otherwise):
    KEY=$(aws --endpoint-url http://127.0.0.1:8080 kms create-key --query KeyMetadata.KeyId --output text)
    aws --endpoint-url http://127.0.0.1:8080 s3 mb s3://demo-cse
    s3proxy cse put secret.txt s3://demo-cse/secret.txt --kms-key-id "$KEY" --endpoint-url http://127.0.0.1:8080
    s3proxy cse get s3://demo-cse/secret.txt - --kms-key-id "$KEY" --endpoint-url http://127.0.0.1:8080
    aws --endpoint-url http://127.0.0.1:8080 s3 cp s3://demo-cse/secret.txt - | head -c 64 | xxd   # ciphertext

Run: python3 examples/client_side.py [--endpoint URL] [--data-dir DIR | --backend-url URL ...]
"""

from __future__ import annotations

import demolib


def main(argv: list[str] | None = None) -> int:
    demo, data, bucket = demolib.start(__doc__, "cse", argv)
    with demo:
        key_id = demolib.new_kms_key(demo, "s3proxy demo: client-side encryption")
        mode = demolib.Cse.with_kms(demo, key_id)
        demolib.walkthrough(demo, mode, bucket, "secret.txt", data)
        for situation, result in demolib.key_failures(demo, key_id, lambda: mode.get(bucket, "secret.txt")).items():
            print(f"  client GET when {situation}: {result}")
        stranger = demolib.Cse.with_local_key(demo, demolib.customer_key())
        print(f"  client GET with another keyring: {demolib.outcome(lambda: stranger.get(bucket, 'secret.txt'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
