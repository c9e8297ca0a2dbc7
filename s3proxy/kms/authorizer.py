"""The Authorizer: which key a request names, and whether its caller may use it for this operation now.

It answers in the order AWS does: the lookup (NotFoundException; the proxy's own SERVICE key does
not exist for API callers), then the key policy and grants (AccessDeniedException), then the key
state table (DisabledException, KMSInvalidStateException). Parsed policies are cached by their text
(up to 1,024), so the data path evaluates a policy without parsing JSON on each call.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import lifecycle
from .caller import Caller
from .config import Config
from .errors import AccessDeniedException, NotFoundException
from .policy import ALLOW, DENY, Grant, Request, evaluate, parse_policy
from .registry import KeyRecord, Registry

_POLICY_CACHE = 1024


class Authorizer:
    def __init__(self, registry: Registry, config: Config, *, note: Callable[[str], None] = lambda arn: None) -> None:
        self._registry = registry
        self._config = config
        self._note = note  # told the ARN of each key looked up (the audit record's resources)
        self._policies: dict[str, dict[str, Any]] = {}

    def lookup(self, caller: Caller, key_id: str, *, aliases: bool = True) -> KeyRecord:
        """Find the key `key_id` names (id, key ARN, alias or alias ARN); NotFoundException if none."""
        if not key_id:
            raise NotFoundException("Invalid keyId ''")
        config = self._config
        alias_name = None
        kid = key_id
        if key_id.startswith("arn:"):
            parts = key_id.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise NotFoundException(f"Invalid arn {key_id}")
            if parts[3] != config.region or parts[4] != config.account_id:
                raise NotFoundException(f"Key '{key_id}' does not exist")
            resource = parts[5]
            if resource.startswith("alias/"):
                alias_name = resource
            elif resource.startswith("key/"):
                kid = resource[4:]
            else:
                raise NotFoundException(f"Invalid arn {key_id}")
        elif key_id.startswith("alias/"):
            alias_name = key_id
        if alias_name is not None:
            if not aliases:
                raise NotFoundException(f"Invalid keyId {key_id}")
            alias = self._registry.alias(alias_name)
            if alias is None:
                raise NotFoundException(f"Alias {config.alias_arn(alias_name)} is not found.")
            kid = alias.target
        record = self._registry.key(kid)
        if record is None:
            try:
                uuid.UUID(kid)
            except ValueError:
                raise NotFoundException(f"Invalid keyId {key_id}") from None
        if record is None or (record.key_manager == "SERVICE" and not caller.is_service):
            raise NotFoundException(f"Key '{config.key_arn(kid)}' does not exist")
        record = self._registry.due(record)
        if record is None:
            raise NotFoundException(f"Key '{config.key_arn(kid)}' does not exist")
        self._note(record.arn)
        return record

    def usable(self, caller: Caller, key_id: str, op: str, action: str | None = None,
               context: Mapping[str, str] | None = None, *, aliases: bool = True) -> KeyRecord:
        """Lookup, then authorization, then the state table: the order AWS answers in."""
        record = self.lookup(caller, key_id, aliases=aliases)
        self.authorize(caller, record, action or op, context)
        self.check_state(op, record)
        return record

    @staticmethod
    def check_state(op: str, record: KeyRecord) -> None:
        """The error the key state table gives for `op` on this key now, if any."""
        lifecycle.check_state(op, record.state, record.arn)

    def authorize(self, caller: Caller, record: KeyRecord, action: str, context: Mapping[str, str] | None = None) -> None:
        """AccessDeniedException unless the key policy or a grant lets `caller` do kms:`action`."""
        if caller.is_service:
            return
        decision = evaluate(self._policy_doc(record.policy), Request(caller, "kms:" + action, context))
        if decision == DENY:
            raise AccessDeniedException(
                f"User: {caller.arn} is not authorized to perform: kms:{action} on resource: {record.arn} "
                f"with an explicit deny in a resource-based policy"
            )
        if decision == ALLOW:
            return
        if any(Grant.from_json(g).allows(caller, action, context) for g in record.grants):
            return
        raise AccessDeniedException(
            f"User: {caller.arn} is not authorized to perform: kms:{action} on resource: {record.arn} "
            f"because no resource-based policy allows the kms:{action} action"
        )

    def _policy_doc(self, text: str) -> dict[str, Any]:
        doc = self._policies.get(text)
        if doc is None:
            doc = parse_policy(text)
            if len(self._policies) > _POLICY_CACHE:
                self._policies.clear()
            self._policies[text] = doc
        return doc
