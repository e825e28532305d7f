"""DynamoDB access for the per-user state item (table env USER_STATE_TABLE, key user_id)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from rtrec.state import UserState

BATCH_GET_KEYS = 100
BATCH_GET_ATTEMPTS = 8  # calls, including those that retry unprocessed keys


class VersionConflict(Exception):
    """Another writer changed the item since it was read (optimistic lock lost)."""


class UserStateStore:
    """Reads and conditionally writes ``UserState`` items.

    ``table`` is a boto3 DynamoDB ``Table`` resource; tests pass one bound to moto.
    Calls go through the table's client, which is thread safe (resources are not)
    and carries boto3's DynamoDB (de)serialisation: plain Python values in and out.
    """

    def __init__(self, table: Any) -> None:
        self._name = table.name
        self._client = table.meta.client

    @classmethod
    def from_env(cls, resource: Any = None) -> UserStateStore:
        """The store for the table named by USER_STATE_TABLE."""
        if resource is None:
            import boto3

            resource = boto3.resource("dynamodb")
        return cls(resource.Table(os.environ["USER_STATE_TABLE"]))

    def get(self, user_id: str, consistent: bool = True) -> UserState | None:
        """The user's state, or None for a user with no events yet."""
        response = self._client.get_item(
            TableName=self._name, Key={"user_id": user_id}, ConsistentRead=consistent
        )
        item = response.get("Item")
        return None if item is None else UserState.from_item(item)

    def get_many(self, user_ids: Iterable[str], consistent: bool = True) -> dict[str, UserState | None]:
        """States of several users with BatchGetItem (100 keys per call); None for users with no item.

        Keys DynamoDB leaves unprocessed (throttling) are retried a few times and
        then read one by one, so every requested user is in the result.
        """
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, UserState | None] = dict.fromkeys(wanted)
        pending = [{"user_id": user_id} for user_id in wanted]
        attempts = 0
        while pending and attempts < BATCH_GET_ATTEMPTS:
            attempts += 1
            chunk, pending = pending[:BATCH_GET_KEYS], pending[BATCH_GET_KEYS:]
            response = self._client.batch_get_item(
                RequestItems={self._name: {"Keys": chunk, "ConsistentRead": consistent}}
            )
            for item in response.get("Responses", {}).get(self._name, []):
                found[item["user_id"]] = UserState.from_item(item)
            pending.extend(response.get("UnprocessedKeys", {}).get(self._name, {}).get("Keys", []))
        for key in pending:
            user_id = key["user_id"]
            found[user_id] = self.get(user_id, consistent=consistent)
        return found

    def put(self, state: UserState) -> None:
        """Write ``state`` if the stored version is still ``state.version - 1``.

        Raises VersionConflict when it is not; other ClientErrors (throttling,
        timeouts) propagate for the caller to report as retryable.
        """
        expected = state.version - 1
        if expected <= 0:
            condition = "attribute_not_exists(user_id)"
            values: dict[str, Any] = {}
        else:
            condition = "version = :expected"
            values = {":expected": expected}
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "Item": state.to_item(),
            "ConditionExpression": condition,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self._client.put_item(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise VersionConflict(state.user_id) from error
            raise
