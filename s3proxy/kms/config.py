"""Where this KMS stands (region, its own account, administrators) and the ARNs and alias names that follow from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    region: str = "us-east-1"
    account_id: str = "000000000000"
    administrators: tuple[str, ...] = ()  # principal ARNs (or user names) with full access to every key

    def key_arn(self, key_id: str, account: str | None = None) -> str:
        return f"arn:aws:kms:{self.region}:{account or self.account_id}:key/{key_id}"

    def alias_arn(self, alias_name: str, account: str | None = None) -> str:
        return f"arn:aws:kms:{self.region}:{account or self.account_id}:{alias_name}"

    def alias_entry(self, account: str, alias_name: str) -> str:
        """The registry's name for an account's alias: aliases are per account, as in AWS.
        The configured account keeps the bare name (so keystores from before accounts read unchanged)."""
        return alias_name if account == self.account_id else f"{account}/{alias_name}"

    def alias_owner(self, entry: str) -> tuple[str, str]:
        """(account, alias name) of a registry alias entry name."""
        if entry.startswith("alias/"):
            return self.account_id, entry
        account, _, alias_name = entry.partition("/")
        return account, alias_name

    def admin_arns(self) -> list[str]:
        return [a if a.startswith("arn:") else f"arn:aws:iam::{self.account_id}:user/{a}" for a in self.administrators]
