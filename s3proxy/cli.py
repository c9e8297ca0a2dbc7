"""Command-line entry points: `s3proxy serve | config | audit verify | rewrap | encrypt-existing | cse ...`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import settings as settings_mod

# commands whose parsers need nothing but settings: for them the cse and tools commands (which
# bring boto3 and botocore, ~0.1 s and ~15 MiB) are not loaded
_PLAIN_COMMANDS = ("serve", "config", "audit", "kms")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command`, or (none or another named) for every command."""
    parser = argparse.ArgumentParser(prog="s3proxy", description="An S3-compatible encrypting proxy with its own KMS.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy (embedded default: filesystem backend, local keystore, loopback)")
    settings_mod.add_arguments(serve)
    config = sub.add_parser("config", help="print the effective settings (secrets redacted) or the settings reference")
    settings_mod.add_arguments(config)
    config.add_argument("--reference", action="store_true", help="print the configuration reference as Markdown")
    audit = sub.add_parser("audit", help="the KMS audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the keyed chain of each audit log (needs the keystore and root key): exit 0 intact, "
                       "1 tampered, 3 lines missing, 4 not found")
    verify.add_argument("--file", help="one audit log (default: every log in DATA_DIR/kms: audit.log and each worker's "
                                       "audit.wN.log; DATA_DIR from --data-dir/--config/S3PROXY_DATA_DIR)")
    settings_mod.add_arguments(verify)
    kms = sub.add_parser("kms", help="keystore care: backup, verify-backup, restore, rotate-root-key")
    kms_sub = kms.add_subparsers(dest="kms_command", required=True)
    for name, text in (
        ("backup", "write an encrypted, verifiable archive of the keystore"),
        ("verify-backup", "check an archive end to end (passphrase, manifest, database)"),
        ("restore", "restore the keystore (and root key, if archived) from an archive"),
        ("rotate-root-key", "seal every keystore entry under a new root key; running proxies keep serving"),
    ):
        p = kms_sub.add_parser(name, help=text)
        settings_mod.add_arguments(p)
        if name != "rotate-root-key":
            p.add_argument("archive", help="archive file")
            p.add_argument(
                "--passphrase-file", help="file holding the archive passphrase (default: env S3PROXY_BACKUP_PASSPHRASE)"
            )
        if name == "backup":
            p.add_argument(
                "--include-root-key",
                action="store_true",
                help="also archive the root keyring (guard the archive like the root key)",
            )
        if name == "restore":
            p.add_argument("--force", action="store_true", help="replace an existing keystore")
        if name == "rotate-root-key":
            p.add_argument(
                "--finish", action="store_true", help="after proxies picked up the new key: re-seal the rest, drop old keys"
            )
    if command not in _PLAIN_COMMANDS:
        from .cse import cli as cse_cli
        from .tools import commands as tool_commands

        tool_commands.add_subcommands(sub)
        cse = sub.add_parser("cse", help="client-side encryption (AWS S3 Encryption Client formats) against any S3 endpoint")
        cse_cli.add_subcommands(cse.add_subparsers(dest="cse_command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    if args.command == "cse":
        from .cse import cli as cse_cli

        return cse_cli.run(args)
    if args.command in ("rewrap", "encrypt-existing"):
        from .tools import commands as tool_commands

        return tool_commands.run(args)
    flags = vars(args)
    try:
        settings = settings_mod.load(flags)
    except settings_mod.SettingsError as exc:
        print(f"s3proxy: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "kms":
        return run_kms(args, settings)
    if args.command == "audit":
        from .app import root_sealer
        from .kms.audit import audit_log_path, audit_logs, run_audit_verify
        from .kms.integrity import read_integrity_keys

        def keys() -> bytes:
            return read_integrity_keys(settings.data_dir, settings.root_key_path, keystore_url=settings.keystore_url,
                                       sealer=root_sealer(settings)).audit

        if args.file:
            return run_audit_verify(Path(args.file), keys)
        # every chain in the data dir: the single process's and each worker's
        return max(run_audit_verify(p, keys) for p in audit_logs(settings.data_dir) or [audit_log_path(settings.data_dir)])
    if args.command == "config":
        if args.reference:
            print(settings_mod.reference_markdown(), end="")
        else:
            for name, value in settings_mod.describe(settings).items():
                print(f"{name} = {value}")
        return 0
    from .app import StartupError, serve

    try:
        if settings.workers > 1:
            from .workers import serve_workers

            return serve_workers(settings, reload=lambda: settings_mod.load(flags))
        serve(settings)
    except StartupError as exc:
        print(f"s3proxy: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def run_kms(args: argparse.Namespace, settings: settings_mod.Settings) -> int:
    import os

    from .kms import care
    from .kms.errors import KmsError, RootKeyError

    try:
        if args.kms_command == "rotate-root-key":
            if args.finish:
                count = care.finish_rotation(settings.data_dir, settings.root_key_path, keystore_url=settings.keystore_url)
                print(f"rotation finished: {count} entries re-sealed, old root keys dropped from {settings.root_key_path}")
            else:
                count = care.rotate_root_key(settings.data_dir, settings.root_key_path, keystore_url=settings.keystore_url)
                print(f"root key rotated: {count} entries re-sealed; run again with --finish once every proxy has picked it up")
            return 0
        if args.passphrase_file:
            passphrase = Path(args.passphrase_file).read_bytes().strip()
        else:
            passphrase = os.environ.get("S3PROXY_BACKUP_PASSPHRASE", "").encode()
        archive = Path(args.archive)
        if args.kms_command == "backup":
            m = care.backup(
                settings.data_dir,
                archive,
                passphrase,
                root_key_file=settings.root_key_path,
                include_root_key=args.include_root_key,
                keystore_url=settings.keystore_url,
            )
        elif args.kms_command == "verify-backup":
            m = care.open_archive(archive, passphrase)[0]
        else:
            m = care.restore(archive, passphrase, settings.data_dir, root_key_file=settings.root_key_path, force=args.force,
                             keystore_url=settings.keystore_url)
        root_key = "included" if m.root_key else "not included"
        print(f"{args.kms_command}: ok ({m.entries} entries, made {m.created}, root key {root_key})")
        return 0
    except (care.BackupError, RootKeyError, OSError, KmsError, RuntimeError) as exc:
        print(f"s3proxy kms {args.kms_command}: {exc}", file=sys.stderr)
        return 1
