"""Where this KMS stands (region, account, administrators) and the ARNs that follow from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    region: str = "us-east-1"
    account_id: str = "000000000000"
    administrators: tuple[str, ...] = ()  # principal ARNs (or user names) with full access to every key

    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:key/{key_id}"

    def alias_arn(self, alias_name: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account_id}:{alias_name}"

    def admin_arns(self) -> list[str]:
        return [a if a.startswith("arn:") else f"arn:aws:iam::{self.account_id}:user/{a}" for a in self.administrators]
