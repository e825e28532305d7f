"""boto3 clients with explicit timeouts and a retry budget sized to the caller's deadline.

Without a botocore ``Config`` a client waits 60 s to connect and 60 s to read and retries with
the legacy policy (ten attempts for DynamoDB): an unreachable store then outlives the function's
timeout. Every function builds its clients here, from its settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClientTimeouts:
    """Connect and read timeouts in seconds, and the total attempts of one call (1 = no retry)."""

    connect_s: float
    read_s: float
    max_attempts: int

    def worst_case_s(self) -> float:
        """Upper bound of one call's duration without backoff: every attempt times out."""
        return self.max_attempts * (self.connect_s + self.read_s)


def aws_client(service: str, timeouts: ClientTimeouts, **kwargs: Any) -> Any:
    """A boto3 client for ``service`` with ``timeouts`` and botocore's standard retry mode."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeouts.connect_s,
        read_timeout=timeouts.read_s,
        retries={"mode": "standard", "total_max_attempts": timeouts.max_attempts},
    )
    # boto3-stubs types client() per literal service name; this one is chosen at run time.
    return boto3.client(service, config=config, **kwargs)  # type: ignore[call-overload]
