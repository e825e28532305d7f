"""Bulk-import a catalog (JSON Lines, CSV or Parquet) into the catalog table.

    python scripts/import_catalog.py ITEMS_FILE --table CATALOG_TABLE [--endpoint-url URL] [--skip-invalid]

Rows are validated with the service's own item contract (`rtrec.catalog`) and written with
BatchWriteItem through `rtrec.stores.catalog` (the writer the admin API uses), so every running
recommend function sees the items within its refresh interval. An operator with AWS credentials
writes the table directly: this is the admin path for thousands of items, the admin API
(`PUT /v1/items/{id}`, `POST /v1/items/batch`) the one for a few.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "core"), str(REPO_ROOT)]

import boto3  # noqa: E402

from dataio.files import read_items  # noqa: E402
from rtrec.stores.catalog import CatalogStore  # noqa: E402

CHUNK = 500


def import_items(store: CatalogStore, path: Path, skip_invalid: bool = False) -> tuple[int, list[str]]:
    """Write every valid item of ``path``; returns how many were written and the ids left unwritten."""
    items = read_items(path, skip_invalid=skip_invalid)
    unwritten: list[str] = []
    for start in range(0, len(items), CHUNK):
        unwritten += store.put_many(items[start : start + CHUNK])
    return len(items) - len(unwritten), unwritten


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", type=Path, help="items.jsonl, items.csv or items.parquet")
    parser.add_argument("--table", required=True, help="the catalog table (stack output CatalogTableName)")
    parser.add_argument("--endpoint-url", help="a local DynamoDB (moto server) instead of AWS")
    parser.add_argument("--skip-invalid", action="store_true", help="skip invalid rows instead of stopping")
    args = parser.parse_args(argv)
    store = CatalogStore(boto3.client("dynamodb", endpoint_url=args.endpoint_url), args.table)
    started = time.perf_counter()
    written, unwritten = import_items(store, args.items, args.skip_invalid)
    print(
        f"{written} items written in {time.perf_counter() - started:.1f} s; {len(unwritten)} left unwritten"
    )
    return 1 if unwritten else 0


if __name__ == "__main__":
    sys.exit(main())
