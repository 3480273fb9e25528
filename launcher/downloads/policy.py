"""How hard a download retries: backoff with jitter, ``Retry-After`` honoured and bounded."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry. ``max_attempts`` counts consecutive failures with no bytes received."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    read_timeout: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        d = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return d * (0.75 + 0.5 * random.random())  # jitter: many clients do not retry in step


class Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
