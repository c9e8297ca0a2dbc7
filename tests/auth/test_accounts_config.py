"""Accounts and identity policies in the configuration: which account each credential belongs to, and
the start refused (with a message an operator can act on) for any policy the engine cannot enforce.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from s3proxy.app import StartupError, derived_account, load_credentials
from s3proxy.policy import FULL_ACCESS, Match, Request, evaluate, principal_context
from s3proxy.settings import SettingsError, load

FULL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
NO_DELETION = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
    {"Effect": "Deny", "Action": ["kms:ScheduleKeyDeletion", "kms:DisableKey"], "Resource": "*"}]})


def entry(access_key: str, user: str, **members: str) -> str:
    lines = ["[[credentials]]", f'access_key = "{access_key}"', 'secret_key = "a-long-enough-secret-0001"', f'user = "{user}"']
    lines += [f"{k} = '''{v}'''" for k, v in members.items()]  # TOML literal strings: JSON as written
    return "\n".join(lines) + "\n"


def settings_with(tmp_path: Path, *entries: str, **flags: str) -> Any:
    config = tmp_path / "users.toml"
    config.write_text("".join(entries))
    return load({"data_dir": str(tmp_path / "data"), "config": str(config), **flags}, env={})


def credentials(tmp_path: Path, *entries: str, **flags: str) -> dict[str, Any]:
    store = load_credentials(settings_with(tmp_path, *entries, **flags)).credentials
    return {ak: store.lookup(ak) for ak in re.findall(r'access_key = "([^"]+)"', "".join(entries))}


def test_accounts_named_shared_or_derived(tmp_path: Path) -> None:
    got = credentials(
        tmp_path,
        entry("AKIAAAAAAAAAAAAALICE", "alice", account="111111111111"),
        entry("AKIAAAAAAAAAAAAAANNA", "anna", account="111111111111", policy=NO_DELETION),
        entry("AKIABBBBBBBBBBBBBERT", "bert", account="222222222222"),
        entry("AKIACCCCCCCCCCCCCARL", "carl"),  # no account: one of its own, derived from its access key
    )
    assert got["AKIAAAAAAAAAAAAALICE"].arn == "arn:aws:iam::111111111111:user/alice"
    assert got["AKIAAAAAAAAAAAAAANNA"].account == got["AKIAAAAAAAAAAAAALICE"].account  # two users, one account
    assert got["AKIABBBBBBBBBBBBBERT"].arn == "arn:aws:iam::222222222222:user/bert"
    carl = got["AKIACCCCCCCCCCCCCARL"]
    assert carl.account == derived_account("AKIACCCCCCCCCCCCCARL") and re.fullmatch(r"\d{12}", carl.account)
    assert derived_account("AKIACCCCCCCCCCCCCARL") == derived_account("AKIACCCCCCCCCCCCCARL")  # stable across starts
    assert derived_account("AKIACCCCCCCCCCCCCAR2") != carl.account
    assert got["AKIAAAAAAAAAAAAALICE"].policy is FULL_ACCESS  # no policy: full access (documented)
    anna = got["AKIAAAAAAAAAAAAAANNA"]
    context = principal_context(anna.policy and _principal(anna), secure=True, source_ip="127.0.0.1", region="us-east-1")
    deny = Request(_principal(anna), "kms:ScheduleKeyDeletion", "arn:aws:kms:us-east-1:111111111111:key/x", context)
    assert evaluate(anna.policy, deny) is Match.DENY
    assert re.fullmatch(r"AIDA[A-Z2-7]{17}", anna.user_id)


def _principal(credential: Any) -> Any:
    from s3proxy.policy import Principal

    return Principal(credential.account, credential.user_name)


def test_the_single_pair_and_the_generated_pair_keep_the_configured_account(tmp_path: Path) -> None:
    pair = load({"data_dir": str(tmp_path / "a"), "access_key": "AKIAPAIR000000000001", "secret_key": "s" * 20}, env={})
    assert load_credentials(pair).credentials.lookup("AKIAPAIR000000000001").account == "000000000000"
    other = load({"data_dir": str(tmp_path / "b"), "access_key": "AKIAPAIR000000000001", "secret_key": "s" * 20,
                  "account_id": "123456789012"}, env={})
    assert load_credentials(other).credentials.lookup("AKIAPAIR000000000001").account == "123456789012"
    (tmp_path / "c").mkdir()
    generated = load_credentials(load({"data_dir": str(tmp_path / "c")}, env={})).generated
    assert generated is not None and generated.account == "000000000000"
    # and the stored file reads back into the same account (it names none: the configured one)
    again = load_credentials(load({"data_dir": str(tmp_path / "c")}, env={})).credentials
    assert again.lookup(generated.access_key).arn == "arn:aws:iam::000000000000:user/admin"


def test_policy_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "anna.json").write_text(NO_DELETION)
    got = credentials(tmp_path, entry("AKIAAAAAAAAAAAAAANNA", "anna", account="111111111111",
                                      policy_file="policies/anna.json"))
    assert got["AKIAAAAAAAAAAAAAANNA"].policy.text == NO_DELETION


REFUSED = [
    # (members of one entry, words of the error): each is refused at start, never run with full access
    ({"policy": "{not json"}, "not valid JSON"),
    ({"policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                                          {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
                                           "Condition": {"Bool": {"aws:SecureTransprt": "false"}}}]})},
     "not permitted in an identity policy: aws:SecureTransprt"),  # the fail-open Deny
    ({"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]})},
     "must not name a Principal"),
    ({"policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})},
     "enforces identity policies on KMS only"),  # it would restrict S3, which does not consult it yet
    ({"policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                                          {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}]})},
     "enforces identity policies on KMS only"),
    ({"policy_file": "missing.json"}, "policy_file"),
    ({"account": "12345"}, "12-digit"),
    ({"polcy": FULL}, "unknown member(s) polcy"),  # a misspelt policy must not leave full access
]


@pytest.mark.parametrize(("members", "words"), REFUSED)
def test_start_is_refused(tmp_path: Path, members: dict[str, str], words: str) -> None:
    with pytest.raises((StartupError, SettingsError)) as e:
        credentials(tmp_path, entry("AKIAAAAAAAAAAAAAANNA", "anna", **members))
    assert words in str(e.value)


def test_one_user_two_keys_must_share_a_policy_and_names_follow_iam(tmp_path: Path) -> None:
    both = (entry("AKIAAAAAAAAAAAAAAAN1", "anna", account="111111111111", policy=FULL),
            entry("AKIAAAAAAAAAAAAAAAN2", "anna", account="111111111111", policy=NO_DELETION))
    with pytest.raises(StartupError, match="two access keys with different policies"):
        credentials(tmp_path, *both)
    same = credentials(tmp_path, entry("AKIAAAAAAAAAAAAAAAN1", "anna", account="111111111111"),
                       entry("AKIAAAAAAAAAAAAAAAN2", "anna", account="111111111111"))
    assert {c.arn for c in same.values()} == {"arn:aws:iam::111111111111:user/anna"}
    with pytest.raises(StartupError, match="IAM's rule"):
        credentials(tmp_path, entry("AKIAAAAAAAAAAAAAAAN1", "anna/root", account="111111111111"))
