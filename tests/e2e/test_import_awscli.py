"""AWS's "importing key material" walkthrough, as the AWS KMS developer guide writes it, run by bash with the real
awscli and the system's openssl against the proxy (only AWS_ENDPOINT_URL points it here); then the imported key
serves SSE-KMS through `aws s3 cp`, its material expires or is deleted (clear KMS errors, nothing lost), and the
same material brings every object back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ACCESS_KEY, REGION, SECRET_KEY, start_proxy
from tests.system_packages import require

# Step 1 to 4 of the guide (create a key without material; download the wrapping public key and import token;
# encrypt the key material; import it), the commands as the guide prints them. `aws` is this Python's awscli.
PRELUDE = r"""
set -euo pipefail
aws() { "$PYTHON" -m awscli "$@"; }
"""
CREATE = r"""
KEY_ID=$(aws kms create-key --origin EXTERNAL --query KeyMetadata.KeyId --output text)
"""
DOWNLOAD = r"""
export KEY=`aws kms get-parameters-for-import \
    --key-id $KEY_ID \
    --wrapping-algorithm $WRAPPING_ALGORITHM \
    --wrapping-key-spec RSA_4096 \
    --query '{Key:PublicKey,Token:ImportToken}' \
    --output text`
echo $KEY | awk '{print $1}' > PublicKey.b64
echo $KEY | awk '{print $2}' > ImportToken.b64
openssl enc -d -base64 -A -in PublicKey.b64 -out PublicKey.bin
openssl enc -d -base64 -A -in ImportToken.b64 -out ImportToken.bin
"""
MATERIAL = r"""
openssl rand -out PlaintextKeyMaterial.bin 32
"""
ENCRYPT_AND_IMPORT = r"""
if [ "$WRAPPING_ALGORITHM" = RSAES_OAEP_SHA_256 ]; then
openssl pkeyutl \
    -encrypt \
    -in PlaintextKeyMaterial.bin \
    -out EncryptedKeyMaterial.bin \
    -inkey PublicKey.bin \
    -keyform DER \
    -pubin \
    -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256
else
openssl pkeyutl \
    -encrypt \
    -in PlaintextKeyMaterial.bin \
    -out EncryptedKeyMaterial.bin \
    -inkey PublicKey.bin \
    -keyform DER \
    -pubin \
    -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha1
fi

aws kms import-key-material --key-id $KEY_ID \
    --encrypted-key-material fileb://EncryptedKeyMaterial.bin \
    --import-token fileb://ImportToken.bin \
    --expiration-model KEY_MATERIAL_EXPIRES \
    --valid-to $VALID_TO

aws kms describe-key --key-id $KEY_ID
"""
SYMMETRIC_WALKTHROUGH = PRELUDE + CREATE + DOWNLOAD + MATERIAL + ENCRYPT_AND_IMPORT
REIMPORT = PRELUDE + DOWNLOAD + ENCRYPT_AND_IMPORT  # steps 2-4 again, for the kept PlaintextKeyMaterial.bin

# the guide's RSA_AES_KEY_WRAP_SHA_256 path, for an asymmetric (ECC signing) key's PKCS#8 private key
ASYMMETRIC_WALKTHROUGH = r"""
set -euo pipefail
aws() { "$PYTHON" -m awscli "$@"; }

KEY_ID=$(aws kms create-key --origin EXTERNAL --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY \
    --query KeyMetadata.KeyId --output text)

export KEY=`aws kms get-parameters-for-import \
    --key-id $KEY_ID \
    --wrapping-algorithm RSA_AES_KEY_WRAP_SHA_256 \
    --wrapping-key-spec RSA_3072 \
    --query '{Key:PublicKey,Token:ImportToken}' \
    --output text`
echo $KEY | awk '{print $1}' > PublicKey.b64
echo $KEY | awk '{print $2}' > ImportToken.b64
openssl enc -d -base64 -A -in PublicKey.b64 -out PublicKey.bin
openssl enc -d -base64 -A -in ImportToken.b64 -out ImportToken.bin

openssl ecparam -name prime256v1 -genkey | openssl pkcs8 -topk8 -outform der -nocrypt > PlaintextKeyMaterial.der

openssl rand -out aes-key.bin 32
openssl enc -id-aes256-wrap-pad \
        -K "$(xxd -p < aes-key.bin | tr -d '\n')" \
        -iv A65959A6 \
        -in PlaintextKeyMaterial.der \
        -out key-material-wrapped.bin
openssl pkeyutl \
    -encrypt \
    -in aes-key.bin \
    -out aes-key-wrapped.bin \
    -inkey PublicKey.bin \
    -keyform DER \
    -pubin \
    -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:sha256 \
    -pkeyopt rsa_mgf1_md:sha256
cat aes-key-wrapped.bin key-material-wrapped.bin > EncryptedKeyMaterial.bin

aws kms import-key-material --key-id $KEY_ID \
    --encrypted-key-material fileb://EncryptedKeyMaterial.bin \
    --import-token fileb://ImportToken.bin \
    --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE

echo -n "signed by imported key" > message.bin
aws kms sign --key-id $KEY_ID --message fileb://message.bin --message-type RAW \
    --signing-algorithm ECDSA_SHA_256 --query Signature --output text | openssl enc -d -base64 -A > signature.der
openssl pkey -inform der -in PlaintextKeyMaterial.der -pubout -out public.pem
openssl dgst -sha256 -verify public.pem -signature signature.der message.bin
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    thread, endpoint = start_proxy(tmp_path_factory.mktemp("import-proxy"), "fs", None)
    yield endpoint
    thread.stop()


def _run(script: str, cwd: Path, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHON": sys.executable, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION, **env}
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"walkthrough failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _documents(text: str) -> list[dict]:
    """The JSON documents awscli printed, one after another."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, at = decoder.raw_decode(text, at)
        out.append(doc)
    return out


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"])
def test_symmetric_walkthrough_then_sse_kms_through_awscli(proxy, tmp_path, algorithm):
    require("openssl")
    valid_to = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 30 * 86400))
    proc = _run(SYMMETRIC_WALKTHROUGH, tmp_path, proxy.url, WRAPPING_ALGORITHM=algorithm, VALID_TO=valid_to)
    imported, described = _documents(proc.stdout)
    meta = described["KeyMetadata"]
    assert imported["KeyId"] == meta["Arn"] and imported["KeyMaterialId"] == meta["CurrentKeyMaterialId"]
    assert (meta["Origin"], meta["KeyState"], meta["ExpirationModel"]) == ("EXTERNAL", "Enabled", "KEY_MATERIAL_EXPIRES")
    key_id = meta["KeyId"]
    kms = proxy.client("kms")
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"imported through the guide")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"imported through the guide"

    # SSE-KMS with the imported key, by the CLI; then the material goes and comes back: nothing is lost
    s3 = proxy.client()
    bucket = f"import-{key_id[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(300_000)
    (tmp_path / "object").write_bytes(body)
    proxy.aws("s3", "cp", str(tmp_path / "object"), f"s3://{bucket}/obj", "--sse", "aws:kms", "--sse-kms-key-id", key_id)
    s3.put_object(Bucket=bucket, Key="bk", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id,
                  BucketKeyEnabled=True)
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == meta["Arn"]
    kms.delete_imported_key_material(KeyId=key_id)
    for name in ("obj", "bk"):
        got = proxy.aws("s3api", "get-object", "--bucket", bucket, "--key", name, str(tmp_path / "out"), check=False)
        said = got.stderr.decode()
        assert got.returncode != 0 and "KMS.KMSInvalidStateException" in said and "pending import" in said
    refused = proxy.aws("s3", "cp", str(tmp_path / "object"), f"s3://{bucket}/new", "--sse", "aws:kms",
                        "--sse-kms-key-id", key_id, check=False)
    assert refused.returncode != 0 and "KMSInvalidStateException" in refused.stderr.decode()
    # the owner imports the same material again (the guide's steps 2-4, with the kept PlaintextKeyMaterial.bin)
    _run(REIMPORT, tmp_path, proxy.url, WRAPPING_ALGORITHM=algorithm, VALID_TO=valid_to, KEY_ID=key_id)
    for name in ("obj", "bk"):
        proxy.aws("s3", "cp", f"s3://{bucket}/{name}", str(tmp_path / name))
        assert (tmp_path / name).read_bytes() == body


def test_asymmetric_walkthrough_with_rsa_aes_key_wrap(proxy, tmp_path):
    require("openssl")
    require("xxd")
    proc = _run(ASYMMETRIC_WALKTHROUGH, tmp_path, proxy.url)
    assert "Verified OK" in proc.stdout
