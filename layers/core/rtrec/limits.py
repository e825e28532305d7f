"""Per-user rate limits: a token bucket per user, kept by each container.

An HTTP API throttles per route, shared by everyone; it cannot tell users apart. The cheapest place
that can is the function itself: a bucket per user in the container's memory costs no call.
Each container enforces the limit on the requests it serves, so a user spread over N warm
containers can reach N times the rate: the limit bounds a runaway client, it is not a quota. See
docs/ARCHITECTURE.md, "Per-user limits".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """``rate`` units a second, up to ``burst`` at once; a rate of 0 turns the limit off."""

    rate: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class PerUserLimiter:
    """Token buckets for the most recently seen users (at most ``max_users``, oldest dropped)."""

    def __init__(
        self, limit: RateLimit, max_users: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.max_users = max_users
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # user -> (tokens, at)

    def take(self, user_id: str, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens of the user's bucket; 0 when allowed, else the seconds until it would be."""
        if not self.limit.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(user_id, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - at) * self.limit.rate)
        cost = min(cost, self.limit.burst)  # a request larger than the burst passes when the bucket is full
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.limit.rate
        self._buckets[user_id] = (tokens, now)
        while len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
        return wait
