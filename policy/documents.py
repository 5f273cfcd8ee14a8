"""Reading IAM and bucket policy documents: their statements, principals, conditions and actions."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from policy.resources import Props, as_list

# Actions AWS authorizes only on Resource "*" (no resource-level permissions), allowed there and nowhere else.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "route53:ListHostedZones",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
)


class PolicyDocumentError(ValueError):
    """An IAM or bucket policy document that is not a JSON object with statements."""


def policy_statements(document: Any, where: str) -> list[Props]:
    """The statements of a policy document given as JSON text or as a mapping; `where` names it in errors."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise PolicyDocumentError(f"{where}: policy is not valid JSON ({error.msg})") from error
    if not isinstance(document, Mapping):
        raise PolicyDocumentError(f"{where}: policy must be a JSON object, not {type(document).__name__}")
    statements = as_list(document.get("Statement"))
    if not statements or not all(isinstance(statement, Mapping) for statement in statements):
        raise PolicyDocumentError(f"{where}: policy has no statements")
    return statements


def service_principals(statement: Props) -> set[str] | None:
    """The service principals a statement names, or None when it names anything else (accounts, users, `*`)."""
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping) or set(principal) != {"Service"}:
        return None
    return {str(service) for service in as_list(principal["Service"])}


def is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in as_list(principal.get("AWS"))


def condition_values(statement: Props, operator: str, key: str) -> list[str]:
    """Values of one condition key under one operator, matching the key case-insensitively as IAM does."""
    block = (statement.get("Condition") or {}).get(operator) or {}
    return [str(value) for name, values in block.items() if name.lower() == key.lower() for value in as_list(values)]


def document_violations(document: Any, where: str, judge: Callable[[list[Props]], list[str]]) -> list[str]:
    if document is None:
        return [f"{where}: policy document is missing"]
    try:
        statements = policy_statements(document, where)
    except PolicyDocumentError as error:
        return [str(error)]
    return judge(statements)


def only_actions(statement: Props, allowed: frozenset[str]) -> bool:
    """Whether the statement names actions and every one of them is in `allowed`."""
    actions = as_list(statement.get("Action"))
    return bool(actions) and all(action in allowed for action in actions)


def unscopable(statement: Props) -> bool:
    """Whether every action of the statement is one AWS only authorizes on `*`."""
    return only_actions(statement, UNSCOPABLE_ACTIONS)
