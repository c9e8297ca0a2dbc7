"""Command-line entry points: `s3proxy serve | config | audit verify | rewrap | encrypt-existing | cse ...`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pathlib import Path

from . import settings as settings_mod
from .cse import cli as cse_cli
from .tools import commands as tool_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3proxy", description="An S3-compatible encrypting proxy with its own KMS.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy (embedded default: filesystem backend, local keystore, loopback)")
    settings_mod.add_arguments(serve)
    config = sub.add_parser("config", help="print the effective settings (secrets redacted) or the settings reference")
    settings_mod.add_arguments(config)
    config.add_argument("--reference", action="store_true", help="print the configuration reference as Markdown")
    audit = sub.add_parser("audit", help="the KMS audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain of the audit log: any edit or deletion is reported")
    verify.add_argument("--file", help="audit log (default DATA_DIR/kms/audit.log)")
    settings_mod.add_arguments(verify)
    tool_commands.add_subcommands(sub)
    cse = sub.add_parser("cse", help="client-side encryption (AWS S3 Encryption Client formats) against any S3 endpoint")
    cse_cli.add_subcommands(cse.add_subparsers(dest="cse_command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cse":
        return cse_cli.run(args)
    if args.command in ("rewrap", "encrypt-existing"):
        return tool_commands.run(args)
    flags = vars(args)
    try:
        settings = settings_mod.load(flags)
    except settings_mod.SettingsError as exc:
        print(f"s3proxy: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "audit":
        from .kms.audit import run_audit_verify

        return run_audit_verify(Path(args.file) if args.file else settings.data_dir / "kms" / "audit.log")
    if args.command == "config":
        if args.reference:
            print(settings_mod.reference_markdown(), end="")
        else:
            for name, value in settings_mod.describe(settings).items():
                print(f"{name} = {value}")
        return 0
    from .app import StartupError, serve

    try:
        serve(settings)
    except StartupError as exc:
        print(f"s3proxy: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
