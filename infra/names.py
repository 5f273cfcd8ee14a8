"""Host names and e-mail addresses, as the stack's config (infra/config.py) and the redirector's files
(infra/edge/render.py) accept them. No Pulumi here."""

from __future__ import annotations

import re

LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"  # one DNS label
HOSTNAME = re.compile(rf"\A(?=.{{1,253}}\Z){LABEL}(\.{LABEL})*\Z", re.IGNORECASE)  # `localhost`, `Pypi.Example.org`
EMAIL = re.compile(r"\A[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+\Z")


def is_dns_name(value: str) -> bool:
    """Whether `value` is a lower-case host name of two labels or more (`pypi.example.org`): a name in a hosted zone."""
    return bool(HOSTNAME.match(value)) and value == value.lower() and "." in value
