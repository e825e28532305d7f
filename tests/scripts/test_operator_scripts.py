"""Operator tools: the catalog bulk import and the history backfill, against moto."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3

from dataio.movielens import GENRES
from rtrec.features import Catalog
from rtrec.ingest import BatchIngestor
from rtrec.stores.catalog import CatalogStore
from rtrec.stores.user_state import UserStateStore

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import backfill
import import_catalog

YEAR_MS = 365 * 24 * 3600 * 1000
START = 1_000_000_000_000  # 2001-09-09


def write_dataset(directory: Path) -> None:
    items = [
        {"item_id": f"i{n}", "categories": ["a" if n % 2 else "b"], "attributes": {"price": n}}
        for n in range(6)
    ]
    (directory / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    rows = [
        {
            "user_id": f"u{n % 3}",
            "item_id": f"i{n % 6}",
            "type": "purchase",
            "timestamp": START + n * YEAR_MS // 4,
        }
        for n in range(30)
    ]
    (directory / "interactions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_the_catalog_import_writes_every_valid_item(catalog_table, tmp_path):
    write_dataset(tmp_path)
    store = CatalogStore(boto3.client("dynamodb"), catalog_table.name)
    written, unwritten = import_catalog.import_items(store, tmp_path / "items.jsonl")
    assert (written, unwritten) == (6, [])
    assert store.get("i3").attributes == {"price": 3.0}
    assert len(store.changes_since(0)) == 6


def test_a_backfill_of_years_of_history_goes_through_the_fold_once(user_state_table, tmp_path):
    write_dataset(tmp_path)
    catalog = Catalog(
        item_ids=[f"i{n}" for n in range(6)],
        categories=GENRES,
        category_ids=[[1], [2]] * 3,
        popularity=[1] * 6,
    )
    ingestor = BatchIngestor(
        UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
        backfill._NoDeadLetters(),
        catalog,
    )
    totals = backfill.backfill(ingestor, str(tmp_path))
    assert totals == {"users": 3, "applied": 30, "duplicates": 0}
    state = ingestor.store.get("u0")
    assert state.counts == {"purchase": 10}
    assert state.last_event_at == START + 27 * YEAR_MS // 4  # seven years after the first event
    assert state.to_item()["interests"]  # years of decay stay storable
    again = backfill.backfill(ingestor, str(tmp_path))  # a re-run within the horizon applies nothing
    assert again == {"users": 3, "applied": 0, "duplicates": 30}
