"""The `s3proxy cse put|get|ls|rewrap` commands (argparse), also runnable as `python -m s3proxy.cse`.

Credentials come from boto3's usual chain (environment, config files); endpoints from flags.
`get` writes to a temporary file beside the destination and renames it into place only after the
object authenticated, so a failed get never leaves plaintext behind (for `-`, the temporary file is
copied to stdout after authentication).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import IO, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from s3proxy.cse.client import DEFAULT_PART, DEFAULT_SUFFIX, MIB, CseClient
from s3proxy.cse.envelope import LOCATION_INSTRUCTION_FILE, LOCATION_METADATA
from s3proxy.cse.errors import CseError
from s3proxy.cse.keyrings import AesGcmKeyring, Keyring, KmsKeyring, RsaOaepKeyring

_UNITS = {"": 1, "k": 1024, "kib": 1024, "m": MIB, "mib": MIB, "g": 1024 * MIB, "gib": 1024 * MIB}


def _size(text: str) -> int:
    digits = text.rstrip("KkMmGgIiBb")
    unit = text[len(digits):].lower()
    if unit not in _UNITS or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8MiB)")
    return int(digits) * _UNITS[unit]


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _s3_url(text: str) -> tuple[str, str]:
    if not text.startswith("s3://"):
        raise argparse.ArgumentTypeError(f"expected s3://bucket/key, got {text!r}")
    bucket, _, key = text[5:].partition("/")
    if not bucket:
        raise argparse.ArgumentTypeError(f"no bucket in {text!r}")
    return bucket, key


def _add_keyring_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    what = "new " if prefix else ""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(f"--{prefix}kms-key-id", help=f"{what}KMS key id/ARN/alias (kms+context wrapping)")
    group.add_argument(f"--{prefix}aes-key-file", help=f"{what}AES master key: 16/24/32 raw bytes or hex")
    group.add_argument(f"--{prefix}rsa-key-file", help=f"{what}RSA key, PEM (public to put, private to get)")
    parser.add_argument(f"--{prefix}context", action="append", type=_pair, default=[], metavar="KEY=VALUE",
                        help=f"{what}KMS encryption context entry (repeatable)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: boto3's)")
    parser.add_argument("--kms-endpoint-url", help="KMS endpoint (default: the S3 endpoint if given)")
    parser.add_argument("--region", default=None, help="AWS region (default: boto3's, else us-east-1)")
    parser.add_argument("--instruction-suffix", default=DEFAULT_SUFFIX, help="instruction file suffix")


def add_subcommands(subparsers: Any) -> None:
    """Add put, get, ls and rewrap to an argparse subparsers object."""
    put = subparsers.add_parser("put", help="encrypt a file (or - for stdin) into s3://bucket/key")
    put.add_argument("source")
    put.add_argument("dest", type=_s3_url)
    _common(put)
    _add_keyring_flags(put)
    put.add_argument("--format", type=int, choices=(2, 3), default=3, help="S3EC format (default 3, committing)")
    put.add_argument("--instruction-file", action="store_true", help="store the envelope in KEY+suffix")
    put.add_argument("--part-size", type=_size, default=DEFAULT_PART, help="multipart part size (>= 5MiB)")
    put.add_argument("--content-type")
    put.set_defaults(cse_handler=_put)

    get = subparsers.add_parser("get", help="decrypt s3://bucket/key into a file (or - for stdout)")
    get.add_argument("source", type=_s3_url)
    get.add_argument("dest")
    _common(get)
    _add_keyring_flags(get)
    get.set_defaults(cse_handler=_get)

    ls = subparsers.add_parser("ls", help="list objects with their encryption format and wrapping")
    ls.add_argument("source", type=_s3_url, help="s3://bucket[/prefix]")
    _common(ls)
    ls.set_defaults(cse_handler=_ls)

    rewrap = subparsers.add_parser("rewrap", help="re-wrap an object's data key; its data is not read")
    rewrap.add_argument("source", type=_s3_url)
    _common(rewrap)
    _add_keyring_flags(rewrap)
    _add_keyring_flags(rewrap, prefix="new-")
    rewrap.set_defaults(cse_handler=_rewrap)


def _clients(args: argparse.Namespace) -> tuple[Any, Any]:
    session = boto3.session.Session(region_name=args.region)
    region = session.region_name or "us-east-1"
    s3 = session.client("s3", endpoint_url=args.endpoint_url, region_name=region)
    kms = session.client("kms", endpoint_url=args.kms_endpoint_url or args.endpoint_url, region_name=region)
    return s3, kms


def _read_aes_key(path: str) -> bytes:
    raw = open(path, "rb").read()
    if len(raw) in (16, 24, 32):
        return raw
    try:
        return bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise CseError(f"{path}: an AES key file holds 16/24/32 raw bytes or their hex") from None


def _read_rsa_key(path: str) -> RsaOaepKeyring:
    pem = open(path, "rb").read()
    if b"PRIVATE KEY" in pem:
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise CseError(f"{path}: not an RSA key")
        return RsaOaepKeyring(private_key=private)
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, rsa.RSAPublicKey):
        raise CseError(f"{path}: not an RSA key")
    return RsaOaepKeyring(public_key=public)


def _keyring(args: argparse.Namespace, kms: Any, prefix: str = "") -> Keyring:
    kms_id = getattr(args, f"{prefix}kms_key_id")
    aes_file = getattr(args, f"{prefix}aes_key_file")
    if kms_id:
        return KmsKeyring(kms, kms_id)
    if aes_file:
        return AesGcmKeyring(_read_aes_key(aes_file))
    return _read_rsa_key(getattr(args, f"{prefix}rsa_key_file"))


def _client(args: argparse.Namespace, **kw: Any) -> tuple[CseClient, Any]:
    s3, kms = _clients(args)
    keyring = _keyring(args, kms) if hasattr(args, "kms_key_id") else None
    return CseClient(s3, keyring, instruction_suffix=args.instruction_suffix, **kw), kms


def _put(args: argparse.Namespace) -> int:
    client, _ = _client(args, format_version=args.format, part_size=args.part_size,
                        envelope_location=LOCATION_INSTRUCTION_FILE if args.instruction_file else LOCATION_METADATA)
    bucket, key = args.dest
    if not key or key.endswith("/"):
        key += os.path.basename(args.source)
    source: IO[bytes] = sys.stdin.buffer if args.source == "-" else open(args.source, "rb")
    with source:
        result = client.put_object(bucket, key, source, context=dict(args.context), content_type=args.content_type)
    print(f"put s3://{bucket}/{key} v{result.format_version} {result.wrap_alg} "
          f"{result.plaintext_length} bytes ({result.parts or 1} part{'s' if result.parts > 1 else ''})",
          file=sys.stderr)
    return 0


def _get(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    bucket, key = args.source
    to_stdout = args.dest == "-"
    dest = args.dest
    if not to_stdout and os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(key))
    directory = None if to_stdout else (os.path.dirname(os.path.abspath(dest)))
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=".cse-get-", delete=False)
    try:
        with tmp:
            result = client.get_object(bucket, key, tmp, context=dict(args.context))
            tmp.flush()
            os.fsync(tmp.fileno())
        if to_stdout:
            with open(tmp.name, "rb") as done:
                shutil.copyfileobj(done, sys.stdout.buffer, 1024 * 1024)
            sys.stdout.buffer.flush()
            os.unlink(tmp.name)
        else:
            os.replace(tmp.name, dest)
    except BaseException:
        os.unlink(tmp.name)
        raise
    note = "" if result.authenticated else " (UNAUTHENTICATED legacy format)"
    print(f"got s3://{bucket}/{key} v{result.format_version} {result.wrap_alg} "
          f"{result.plaintext_length} bytes{note}", file=sys.stderr)
    return 0


def _ls(args: argparse.Namespace) -> int:
    client, _ = _client(args)
    bucket, prefix = args.source
    for info in client.list_objects(bucket, prefix):
        fmt = f"v{info.format_version}" if info.format_version else "plain"
        plain = "-" if info.plaintext_length is None else str(info.plaintext_length)
        print(f"{fmt:5} {info.wrap_alg or '-':14} {info.envelope_location or '-':16} {plain:>12} {info.key}")
    return 0


def _rewrap(args: argparse.Namespace) -> int:
    client, kms = _client(args)
    bucket, key = args.source
    result = client.rewrap(bucket, key, _keyring(args, kms, prefix="new_"), context=dict(args.context),
                           new_context=dict(args.new_context))
    print(f"rewrapped s3://{bucket}/{key}: {result.old_wrap_alg} -> {result.new_wrap_alg} "
          f"({result.envelope_location})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; 0 on success, 1 with a one-line message on failure."""
    try:
        return int(args.cse_handler(args))
    except (CseError, ClientError, BotoCoreError, OSError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s3proxy.cse",
                                     description="Client-side encryption compatible with the AWS S3 Encryption Client")
    add_subcommands(parser.add_subparsers(dest="cse_command", required=True))
    return run(parser.parse_args(argv))
