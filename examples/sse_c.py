"""SSE-C: the proxy encrypts with a key the client sends on every request and never stores.

The proxy keeps only a salted wrap of the object's data key (AES-GCM under a key derived from the
customer key): enough to recognise the right key, useless without it. Lose the key, lose the object.
SSE-C needs TLS; on plain HTTP the proxy accepts it from loopback clients only (ssec_over_http).

The same with awscli (the key is 32 raw bytes; awscli reads it from a file with fileb://):
    head -c 32 /dev/urandom > sse-c.key
    aws --endpoint-url http://127.0.0.1:8080 s3 mb s3://demo-sse-c
    aws --endpoint-url http://127.0.0.1:8080 s3 cp secret.txt s3://demo-sse-c/secret.txt \\
        --sse-c AES256 --sse-c-key fileb://sse-c.key
    aws --endpoint-url http://127.0.0.1:8080 s3 cp s3://demo-sse-c/secret.txt - \\
        --sse-c AES256 --sse-c-key fileb://sse-c.key
    aws --endpoint-url http://127.0.0.1:8080 s3 cp s3://demo-sse-c/secret.txt -    # 400 InvalidRequest

Run: python3 examples/sse_c.py [--endpoint URL] [--data-dir DIR | --backend-url URL ...]
"""

from __future__ import annotations

import demolib


def main(argv: list[str] | None = None) -> int:
    demo, data, bucket = demolib.start(__doc__, "sse-c", argv)
    with demo:
        mode = demolib.SseC(demo, demolib.customer_key())
        held = demolib.walkthrough(demo, mode, bucket, "secret.txt", data)
        wrong = demolib.SseC(demo, demolib.customer_key())
        print(f"  GET with a wrong customer key: {demolib.outcome(lambda: wrong.get(bucket, 'secret.txt'))}")
        if held is not None:
            print(f"  customer key bytes anywhere at rest: {'YES' if mode.customer_key in held.body + repr(held.metadata).encode() else 'no'}")
            print(f"  one byte flipped at rest, then GET: {demolib.tamper_and_read(demo, mode, bucket, 'secret.txt', data)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
