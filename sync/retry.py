"""The sync's one retry policy: stamina's exponential backoff with full jitter, bounded in attempts and in time.

HTTP requests retry inside urllib3 (`sync.transport`: its `Retry`, which honours Retry-After) and AWS calls inside
botocore ("standard" mode); everything else that is worth trying again — a stale upstream page, a file whose bytes did
not verify, a conditional write that lost a race, a lease held by a sync about to finish — goes through `attempts`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import stamina
from stamina import Attempt

Retryable = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]


def attempts(
    on: Retryable,
    *,
    attempts: int,
    timeout: float | None = None,
    wait_initial: float = 0.1,
    wait_max: float = 5.0,
) -> Iterator[Attempt]:
    """`for attempt in attempts(...): with attempt: ...` tries the block up to `attempts` times (and, with `timeout`,
    for at most that many seconds), pausing with jittered exponential backoff between tries; the last error escapes.
    """
    policy = stamina.retry_context(
        on=on, attempts=attempts, timeout=timeout, wait_initial=wait_initial, wait_max=wait_max, wait_jitter=wait_max
    )
    return iter(policy)
