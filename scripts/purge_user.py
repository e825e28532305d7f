"""Erase one user's data from the deployed stack (an operator's tool; users call DELETE /v1/me).

    python scripts/purge_user.py USER_ID                 # USER_ID = the user's JWT `sub`
    python scripts/purge_user.py USER_ID --dry-run       # report what would go, delete nothing
    python scripts/purge_user.py USER_ID --delete-cognito-user

What it deletes:
- the user's item in the UserState table (DeleteItem; idempotent: a second run finds nothing);
- the dead-letter queue's messages about the user: letters from the ingest function whose
  `partition_key` (or decoded record's `user_id`) is the user. Lambda's own on-failure records hold
  shard and sequence ranges, no user data, and are left alone;
- with --delete-cognito-user, the user's account in the stack's user pool (found by `sub`).

What it cannot delete (see the README's privacy section): records still in the Kinesis stream (kept
for its retention period, 24 h, then gone), the table's point-in-time backups (35 days), logs (the
LogRetentionDays parameter) and X-Ray traces (30 days). Run it when the user can no longer send events
(disable or delete the account first), and run it again a minute later: events that were in the stream
when it ran would otherwise re-create the state item.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import boto3

# While the scan runs, looked-at messages are hidden from other readers; they are made visible again
# at the end. Long enough for a scan of a queue that is meant to stay small.
SCAN_VISIBILITY_TIMEOUT_S = 120
# Long polling for up to this long before a receive counts as empty.
EMPTY_POLL_WAIT_S = 1


@dataclass
class PurgeReport:
    user_id: str
    dry_run: bool
    state_item_deleted: bool = False
    dead_letters_deleted: int = 0
    dead_letters_kept: int = 0
    cognito_user_deleted: bool | None = None
    not_deleted: list[str] = field(
        default_factory=lambda: [
            "Kinesis records: expire with the stream's retention (24 h)",
            "DynamoDB point-in-time backups: 35 days",
            "CloudWatch logs: LogRetentionDays; X-Ray traces: 30 days",
        ]
    )


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def delete_state(dynamodb: Any, table: str, user_id: str, dry_run: bool = False) -> bool:
    """Delete the user's state item; True if there was one."""
    key = {"user_id": {"S": user_id}}
    if dry_run:
        return "Item" in dynamodb.get_item(TableName=table, Key=key, ProjectionExpression="user_id")
    response = dynamodb.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD")
    return "Attributes" in response


def is_about(body: str, user_id: str) -> bool:
    """Whether a dead-letter message body concerns `user_id`."""
    try:
        letter = json.loads(body)
    except ValueError:
        return False
    if not isinstance(letter, dict):
        return False
    if letter.get("partition_key") == user_id:
        return True
    data = letter.get("data_base64")
    if isinstance(data, str) and data and not letter.get("data_truncated"):
        try:
            record = json.loads(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            return False
        return isinstance(record, dict) and record.get("user_id") == user_id
    return False


def purge_dead_letters(
    sqs: Any, queue_url: str, user_id: str, dry_run: bool = False, wait_s: int | None = None
) -> tuple[int, int]:
    """Delete the queue's messages about `user_id`; returns (about the user, about others).

    Every message is received once (hidden meanwhile), so the scan ends; the kept ones are made
    visible again at the end. Messages another reader holds at the time are not seen: run it while
    nobody drains the queue.
    """
    matched, others, hidden, empty = 0, 0, [], 0
    while empty < 2:  # an empty short poll can miss messages; two in a row end the scan
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=SCAN_VISIBILITY_TIMEOUT_S,
            WaitTimeSeconds=EMPTY_POLL_WAIT_S if wait_s is None else wait_s,
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        for message in messages:
            about = is_about(message["Body"], user_id)
            matched += about
            others += not about
            if about and not dry_run:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            else:
                hidden.append(message["ReceiptHandle"])
    for start in range(0, len(hidden), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(hidden[start : start + 10])
            ],
        )
    return matched, others


def delete_cognito_user(cognito: Any, user_pool_id: str, user_id: str, dry_run: bool = False) -> bool:
    """Delete the pool's user whose `sub` is `user_id`; True if there was one."""
    users = cognito.list_users(UserPoolId=user_pool_id, Filter=f'sub = "{user_id}"', Limit=1)["Users"]
    if not users:
        return False
    if not dry_run:
        cognito.admin_delete_user(UserPoolId=user_pool_id, Username=users[0]["Username"])
    return True


def purge(
    session: Any,
    user_id: str,
    outputs: dict[str, str],
    dry_run: bool = False,
    with_cognito: bool = False,
    wait_s: int | None = None,
) -> PurgeReport:
    report = PurgeReport(user_id=user_id, dry_run=dry_run)
    report.state_item_deleted = delete_state(
        session.client("dynamodb"), outputs["UserStateTableName"], user_id, dry_run
    )
    report.dead_letters_deleted, report.dead_letters_kept = purge_dead_letters(
        session.client("sqs"), outputs["DeadLetterQueueUrl"], user_id, dry_run, wait_s
    )
    if with_cognito:
        report.cognito_user_deleted = delete_cognito_user(
            session.client("cognito-idp"), outputs["UserPoolId"], user_id, dry_run
        )
    return report


def main(argv: list[str] | None = None, session: Any = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("user_id", help="the user's id: the `sub` claim of their tokens")
    parser.add_argument("--stack-name", default="rtrec", help="the deployed stack (default: rtrec)")
    parser.add_argument("--region", help="default: your AWS profile's region")
    parser.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
    parser.add_argument(
        "--delete-cognito-user",
        action="store_true",
        help="also delete the account from the stack's user pool",
    )
    args = parser.parse_args(argv)
    if not args.user_id.strip():
        parser.error("USER_ID is empty")

    session = session or boto3.session.Session(region_name=args.region)
    outputs = stack_outputs(session.client("cloudformation"), args.stack_name)
    if args.delete_cognito_user and "UserPoolId" not in outputs:
        parser.error(
            f"stack {args.stack_name} has no user pool (JwtIssuerUrl): delete the account at your provider"
        )
    report = purge(session, args.user_id, outputs, args.dry_run, args.delete_cognito_user)
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
