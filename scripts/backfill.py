"""Seed users' states from historical interactions, any dates, through the same fold as ingest.

    python scripts/backfill.py DATA --table UserState [--endpoint-url URL] [--catalog-dir layers/model/model]

DATA is a dataset spec (`movielens`, or a directory holding interactions.* and items.*; see dataio).
The public events API refuses timestamps older than its window (it accepts only what a client can
send now); a team with history imports it here instead. Each user's events are applied oldest first
in chunks with one conditional write per chunk (the ingest function's optimistic lock), so a backfill
may run while the stream is live. Event ids are derived from the row, so a re-run within the
de-duplication horizon (24 h) applies nothing twice; after that a re-run would count events again.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]

import boto3  # noqa: E402

from dataio import adapter_for  # noqa: E402
from rtrec.events import Event  # noqa: E402
from rtrec.features import Catalog  # noqa: E402
from rtrec.ingest import BatchIngestor, IngestPolicy  # noqa: E402
from rtrec.stores.user_state import UserStateStore  # noqa: E402

CHUNK = 500


class _NoDeadLetters:
    def send(self, letters: Any) -> list[int]:
        return list(range(len(letters)))


def history_event_id(user_id: str, item_id: str, event_type: str, ts: int, row: int) -> str:
    """A stable id per source row: the same file backfilled twice yields the same ids."""
    digest = hashlib.blake2b(
        f"{user_id}\x1f{item_id}\x1f{event_type}\x1f{ts}\x1f{row}".encode(), digest_size=12
    )
    return "bf-" + digest.hexdigest()


def backfill(ingestor: BatchIngestor, spec: str, limit_users: int | None = None) -> dict[str, int]:
    """Apply every user's history; returns counts of users, events applied and duplicates."""
    data = adapter_for(spec).load().sorted_by_time()
    rows = data.interactions
    totals = {"users": 0, "applied": 0, "duplicates": 0}
    for user_id, user_rows in rows.user_sequences().items():
        if limit_users is not None and totals["users"] >= limit_users:
            break
        events = []
        for row in user_rows.tolist():
            value = float(rows.values[row])
            ts = int(rows.timestamps_ms[row])
            item_id, event_type = str(rows.item_ids[row]), str(rows.types[row])
            events.append(
                Event(
                    user_id=str(user_id),
                    event_id=history_event_id(str(user_id), item_id, event_type, ts, row),
                    item_id=item_id,
                    type=event_type,
                    ts=ts,
                    value=None if math.isnan(value) else value,
                )
            )
        for start in range(0, len(events), CHUNK):
            result = ingestor.apply_history(str(user_id), events[start : start + CHUNK])
            totals["applied"] += len(result.applied)
            totals["duplicates"] += len(result.duplicates)
        totals["users"] += 1
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="movielens, or a directory with interactions.* and items.*")
    parser.add_argument(
        "--table", required=True, help="the UserState table (stack output UserStateTableName)"
    )
    parser.add_argument("--endpoint-url", help="a local DynamoDB (moto server) instead of AWS")
    parser.add_argument("--catalog-dir", default=str(REPO_ROOT / "layers" / "model" / "model"))
    parser.add_argument("--limit-users", type=int)
    args = parser.parse_args(argv)
    client = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    catalog_path = Path(args.catalog_dir)
    catalog = Catalog.load(catalog_path) if (catalog_path / "items.json").is_file() else None
    ingestor = BatchIngestor(
        UserStateStore.from_client(client, args.table),
        _NoDeadLetters(),
        catalog,
        IngestPolicy(source="backfill"),
    )
    started = time.perf_counter()
    totals = backfill(ingestor, args.data, args.limit_users)
    print(
        f"{totals['users']} users, {totals['applied']} events applied, {totals['duplicates']} duplicates "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
