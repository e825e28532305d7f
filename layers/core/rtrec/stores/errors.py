"""One error type per store boundary, and the rule that tells a retry from a poison record.

A store call fails in one of two ways. ``StoreUnavailable`` is transient: throttling, timeouts,
a lost connection or an AWS 5xx; the same call may succeed later, so the caller retries it (ingest
reports the records as batch item failures, collect answers 503). ``StoreRejected`` is
deterministic: validation, serialisation, a value the store refuses; retrying gives the same
answer, so the caller sets the input aside (ingest dead-letters that one event).
"""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

# Error codes AWS documents as throttling or server-side trouble, across DynamoDB, Kinesis and SQS.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "LimitExceededException",
        "TransactionConflictException",
        "KMSThrottlingException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "AWS.SimpleQueueService.ServiceUnavailable",
    }
)


class StoreError(Exception):
    """A store call failed; the subclass says whether retrying can help."""


class StoreUnavailable(StoreError):
    """Transient: retry the same call later."""


class StoreRejected(StoreError):
    """Deterministic: the store refuses this input; retrying gives the same answer."""


def is_transient(error: BaseException) -> bool:
    """True for throttling, timeouts, lost connections and AWS 5xx; False for everything else."""
    if isinstance(error, StoreUnavailable):
        return True
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        return details.get("Code") in TRANSIENT_CODES or int(status) >= 500
    return isinstance(
        error,
        ConnectTimeoutError
        | ReadTimeoutError
        | EndpointConnectionError
        | ConnectionClosedError
        | BotoConnectionError,
    )


def classify(error: BaseException, what: str) -> StoreError:
    """The boundary's error for ``error`` raised by a call described by ``what``."""
    if isinstance(error, StoreError):
        return error
    kind = StoreUnavailable if is_transient(error) else StoreRejected
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
    return kind(f"{what}: {code or type(error).__name__}: {error}")


__all__ = [
    "TRANSIENT_CODES",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "classify",
    "is_transient",
]
