"""DynamoDB access for the per-user state item (table env USER_STATE_TABLE, key user_id)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from rtrec.state import UserState
from rtrec.stores.errors import StoreUnavailable, classify

BATCH_GET_KEYS = 100
BATCH_GET_ATTEMPTS = 8  # calls, including those that retry unprocessed keys

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_wire(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in item.items()}


def _from_wire(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def _unchanged(item: dict[str, Any]) -> dict[str, Any]:
    return item


class VersionConflict(StoreUnavailable):
    """Another writer changed the item since it was read (optimistic lock lost): read again and retry."""


class UserStateStore:
    """Reads and conditionally writes ``UserState`` items.

    Two ways to build it, same behaviour:

    - ``UserStateStore.from_client(client, table_name)`` with a low-level ``boto3.client("dynamodb")``:
      the store (de)serialises with boto3's ``TypeSerializer``/``TypeDeserializer``. This is what the
      Lambdas use (``from_env``): a DynamoDB *resource* adds to every cold start only to wrap a client
      (measured in README.md and docs/ARCHITECTURE.md).
    - ``UserStateStore(table)`` with a boto3 ``Table`` resource (or anything with ``.name`` and a
      ``.meta.client`` that takes plain Python values): calls go through the table's client, which
      carries the resource's (de)serialisation. Tests and the replay tool use this.

    Clients are thread safe (resources are not) and the (de)serialisers are stateless, so one store
    serves ingest's concurrent writers.
    """

    def __init__(self, table: Any = None, *, client: Any = None, table_name: str | None = None) -> None:
        if table is not None and client is None:
            self._name = table.name
            self._client = table.meta.client  # a resource's client (de)serialises by itself
            self._encode: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
            self._decode: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged
        elif client is not None and table is None and table_name:
            self._name = table_name
            self._client = client
            self._encode = _to_wire
            self._decode = _from_wire
        else:
            raise TypeError("UserStateStore needs a table, or a client and a table_name")

    @classmethod
    def from_client(cls, client: Any, table_name: str) -> UserStateStore:
        """A store on a low-level DynamoDB client (wire-format attribute values)."""
        return cls(client=client, table_name=table_name)

    def get(self, user_id: str, consistent: bool = True) -> UserState | None:
        """The user's state, or None for a user with no events yet.

        Raises StoreUnavailable (retry later) or StoreRejected (the store refuses the request).
        """
        try:
            response = self._client.get_item(
                TableName=self._name, Key=self._encode({"user_id": user_id}), ConsistentRead=consistent
            )
        except Exception as error:
            raise classify(error, "GetItem") from error
        item = response.get("Item")
        return None if item is None else UserState.from_item(self._decode(item))

    def get_many(self, user_ids: Iterable[str], consistent: bool = True) -> dict[str, UserState | None]:
        """States of several users with BatchGetItem (100 keys per call); None for users with no item.

        Keys DynamoDB leaves unprocessed (throttling) are retried a few times and
        then read one by one, so every requested user is in the result.
        """
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, UserState | None] = dict.fromkeys(wanted)
        pending = [self._encode({"user_id": user_id}) for user_id in wanted]
        attempts = 0
        while pending and attempts < BATCH_GET_ATTEMPTS:
            attempts += 1
            chunk, pending = pending[:BATCH_GET_KEYS], pending[BATCH_GET_KEYS:]
            try:
                response = self._client.batch_get_item(
                    RequestItems={self._name: {"Keys": chunk, "ConsistentRead": consistent}}
                )
            except Exception as error:
                raise classify(error, "BatchGetItem") from error
            for item in response.get("Responses", {}).get(self._name, []):
                state = UserState.from_item(self._decode(item))
                found[state.user_id] = state
            pending.extend(response.get("UnprocessedKeys", {}).get(self._name, {}).get("Keys", []))
        for key in pending:
            user_id = self._decode(key)["user_id"]
            found[user_id] = self.get(user_id, consistent=consistent)
        return found

    def put(self, state: UserState) -> None:
        """Write ``state`` if the stored version is still ``state.version - 1``.

        Raises VersionConflict when it is not, StoreUnavailable for throttling, timeouts and AWS 5xx,
        and StoreRejected when the item cannot be stored (a value or size DynamoDB refuses).
        """
        expected = state.version - 1
        try:
            item = self._encode(state.to_item())
        except Exception as error:
            raise classify(error, "serialising the state") from error
        kwargs: dict[str, Any] = {"TableName": self._name, "Item": item}
        if expected <= 0:
            kwargs["ConditionExpression"] = "attribute_not_exists(user_id)"
        else:
            kwargs["ConditionExpression"] = "version = :expected"
            kwargs["ExpressionAttributeValues"] = self._encode({":expected": expected})
        try:
            self._client.put_item(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise VersionConflict(state.user_id) from error
            raise classify(error, "PutItem") from error
        except Exception as error:
            raise classify(error, "PutItem") from error

    def delete(self, user_id: str) -> None:
        """Remove the user's state; removing a state that does not exist succeeds (idempotent)."""
        try:
            self._client.delete_item(TableName=self._name, Key=self._encode({"user_id": user_id}))
        except Exception as error:
            raise classify(error, "DeleteItem") from error
