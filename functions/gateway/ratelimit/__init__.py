"""Rate limiting for the edge gateway: token buckets (``bucket``, pure arithmetic) shared by
every Lambda instance through DynamoDB (``dynamodb``), whose table ``table`` defines.

The DynamoDB store imports boto3; import it from ``functions.gateway.ratelimit.dynamodb``
only where it is used, so the pure parts stay cheap to import.
"""

from functions.gateway.ratelimit.bucket import (
    HEADER_LIMIT,
    HEADER_REMAINING,
    HEADER_RESET,
    HEADER_RETRY_AFTER,
    BucketState,
    Decision,
    Limit,
    bucket_key,
    refill,
    take,
)

__all__ = [
    "HEADER_LIMIT",
    "HEADER_REMAINING",
    "HEADER_RESET",
    "HEADER_RETRY_AFTER",
    "BucketState",
    "Decision",
    "Limit",
    "bucket_key",
    "refill",
    "take",
]
