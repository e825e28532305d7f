"""The event archive as a data source, and the feature SQL (``sql/*.sql``) run on it with DuckDB.

The archive is what the template's Firehose writes to S3 from the event stream, and what the local stack
writes under ``.cache/archive`` (``infra/local/archive.py``): one JSON line per stream record (the
record as the collect function wrote it: ``{user_id, event_id, item_id, type, ts, value?, session_id?,
recommendation_id?, context?}``), gzip-compressed, under

    <root>/events/kind=<event|impression>/dt=<yyyy-MM-dd, the UTC day of ts>/*.jsonl.gz

DuckDB reads it as the view ``events`` (the Glue table's name and columns, hive partitions ``kind`` and
``dt`` as text) and the catalog as the view ``items`` (``item_id``, ``title``, ``categories``); the SQL
files then run unchanged here and on Athena, where the tables have the same names. Each SQL file takes
two positional parameters, the first and the last day of the window (inclusive, ``yyyy-MM-dd``).

``ArchiveAdapter(root, start_date=None, end_date=None, items_path=None).load()`` gives a ``Dataset``: the
interactions of ``sql/interaction_sequences.sql`` over the window (events only, de-duplicated by
``(user_id, event_id)``, rows that are not events left out and counted in ``skipped_rows``), and the
items of ``items_path`` (any ``dataio.files`` items file) or, without one, every item seen in the
window's events, with no categories. An archive in S3 can be read here after
``aws s3 sync s3://<ArchiveBucketName>/events <root>/events``; on Athena, run the SQL files themselves.

``python -m dataio.archive ROOT [--from DAY] [--to DAY] [--items FILE]`` prints the dataset's summary and
the first rows of each query.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from dataio.dataset import Dataset, InteractionColumns, sha256_file
from rtrec.catalog import CatalogItem

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
QUERIES = ("interaction_sequences", "item_popularity", "category_statistics")
EVENTS_GLOB = "events/kind=*/dt=*/*.jsonl.gz"
# The Glue table's columns (template.yaml ArchiveEventsTable), in DuckDB's types.
EVENT_COLUMNS = {
    "user_id": "VARCHAR",
    "event_id": "VARCHAR",
    "item_id": "VARCHAR",
    "type": "VARCHAR",
    "ts": "BIGINT",
    "value": "DOUBLE",
    "session_id": "VARCHAR",
    "recommendation_id": "VARCHAR",
    "context": "MAP(VARCHAR, VARCHAR)",
}
PARTITION_COLUMNS = {"kind": "VARCHAR", "dt": "VARCHAR"}
FIRST_DAY, LAST_DAY = "0001-01-01", "9999-12-31"  # an open end of the window


def day_text(day: date | str | None, default: str) -> str:
    """A window bound as 'yyyy-MM-dd' (None: ``default``); raises ValueError for anything else."""
    if day is None:
        return default
    return (day if isinstance(day, date) else date.fromisoformat(str(day))).isoformat()


def sql_text(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(root: str | Path, items: list[CatalogItem] | None = None) -> Any:
    """A DuckDB connection with the views ``events`` (the archive under ``root``) and ``items``.

    ``items``: the catalog; None = every item id the archive's events name, with no categories.
    """
    import duckdb

    connection = duckdb.connect()
    root = Path(root)
    if any(root.glob(EVENTS_GLOB)):
        columns = "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in EVENT_COLUMNS.items()) + "}"
        hive_types = (
            "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in PARTITION_COLUMNS.items()) + "}"
        )
        connection.execute(
            f"CREATE VIEW events AS SELECT * FROM read_json({_literal(str(root / EVENTS_GLOB))}, "
            f"format = 'newline_delimited', columns = {columns}, hive_partitioning = true, "
            f"hive_types = {hive_types}, ignore_errors = true)"  # as the Glue table: ignore.malformed.json
        )
    else:  # no file yet: the same columns, no rows (read_json refuses a glob without matches)
        nulls = ", ".join(
            f"CAST(NULL AS {t}) AS {c}" for c, t in {**EVENT_COLUMNS, **PARTITION_COLUMNS}.items()
        )
        connection.execute(f"CREATE VIEW events AS SELECT {nulls} WHERE false")
    connection.execute("CREATE TABLE items (item_id VARCHAR, title VARCHAR, categories VARCHAR[])")
    if items is None:
        connection.execute(
            "INSERT INTO items SELECT DISTINCT item_id, NULL, [] FROM events WHERE item_id IS NOT NULL"
        )
    elif items:
        connection.execute(
            "INSERT INTO items SELECT unnest($1), unnest($2), unnest($3)",
            [[i.item_id for i in items], [i.title for i in items], [list(i.categories) for i in items]],
        )
    return connection


def run_sql(
    connection: Any, name: str, start_date: date | str | None = None, end_date: date | str | None = None
) -> tuple[list[str], list[tuple]]:
    """Run ``sql/<name>.sql`` over the window; returns (column names, rows)."""
    result = connection.execute(
        sql_text(name), [day_text(start_date, FIRST_DAY), day_text(end_date, LAST_DAY)]
    )
    return [d[0] for d in result.description], result.fetchall()


@dataclass
class ArchiveAdapter:
    """Interactions from the event archive over a window of days, items from a file or from the events."""

    root: str | Path
    start_date: date | str | None = None
    end_date: date | str | None = None
    items_path: str | Path | None = None
    name: str | None = None
    skipped: dict[str, int] = field(default_factory=dict, init=False)

    def window(self) -> tuple[str, str]:
        return day_text(self.start_date, FIRST_DAY), day_text(self.end_date, LAST_DAY)

    def files(self) -> list[Path]:
        """The archive's event files whose day is in the window, in path order."""
        first, last = self.window()
        return sorted(
            path
            for path in Path(self.root).glob(EVENTS_GLOB)
            if path.parent.parent.name == "kind=event"
            and first <= path.parent.name.removeprefix("dt=") <= last
        )

    def load(self) -> Dataset:
        items = None
        if self.items_path is not None:
            from dataio.files import read_items

            items = read_items(Path(self.items_path), default_created_at_ms=0)
        connection = connect(self.root, items)
        try:
            columns, rows = run_sql(connection, "interaction_sequences", *self.window())
            skipped = self._skipped(connection)
            if items is None:
                seen = dict.fromkeys(row[columns.index("item_id")] for row in rows)
                items = [CatalogItem(item_id=item_id) for item_id in seen]
        finally:
            connection.close()
        at = {name: columns.index(name) for name in ("user_id", "item_id", "type", "value", "ts")}
        interactions = InteractionColumns(
            user_ids=np.array([row[at["user_id"]] for row in rows], dtype=object),
            item_ids=np.array([row[at["item_id"]] for row in rows], dtype=object),
            types=np.array([row[at["type"]] for row in rows], dtype=object),
            values=np.array(
                [np.nan if row[at["value"]] is None else row[at["value"]] for row in rows], dtype=np.float32
            ),
            timestamps_ms=np.array([row[at["ts"]] for row in rows], dtype=np.int64),
        )
        first, last = self.window()
        return Dataset(
            name=self.name or f"archive:{Path(self.root).name}[{first}..{last}]",
            interactions=interactions,
            items=items,
            fingerprint=self._fingerprint(),
            skipped_rows=skipped,
        )

    def _skipped(self, connection: Any) -> dict[str, int]:
        """Rows of the window that are not events, and repeated copies of events: what the SQL leaves out."""
        valid = (
            "user_id IS NOT NULL AND event_id IS NOT NULL AND item_id IS NOT NULL AND ts IS NOT NULL "
            "AND type IN ('view', 'click', 'add_to_cart', 'purchase', 'rating', 'skip')"
        )
        invalid, duplicates = connection.execute(
            f"SELECT COUNT(CASE WHEN NOT COALESCE({valid}, false) THEN 1 END), "
            f"COUNT(CASE WHEN COALESCE({valid}, false) THEN 1 END) "
            f"- COUNT(DISTINCT CASE WHEN COALESCE({valid}, false) THEN [user_id, event_id] END) "
            "FROM events WHERE kind = 'event' AND dt BETWEEN $1 AND $2",
            list(self.window()),
        ).fetchone()
        return {"interactions": int(invalid), "duplicate_events": int(duplicates)}

    def _fingerprint(self) -> str:
        """sha256 over the window, the files in it (path under root and content) and the items file."""
        digest = hashlib.sha256("window:{}..{}\n".format(*self.window()).encode())
        root = Path(self.root)
        for path in self.files():
            digest.update(f"{path.relative_to(root).as_posix()}:{sha256_file(path)}\n".encode())
        if self.items_path is not None:
            digest.update(f"items:{sha256_file(Path(self.items_path))}\n".encode())
        return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataio.archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the archive's root (holds events/kind=.../dt=.../*.jsonl.gz)")
    parser.add_argument("--from", dest="start", help="first day of the window, yyyy-MM-dd (default: open)")
    parser.add_argument("--to", dest="end", help="last day of the window, yyyy-MM-dd (default: open)")
    parser.add_argument(
        "--items", help="the catalog (an items file dataio reads); default: items of the events"
    )
    parser.add_argument("--rows", type=int, default=5, help="rows of each query to print")
    args = parser.parse_args(argv)
    adapter = ArchiveAdapter(args.root, args.start, args.end, args.items)
    print(json.dumps(adapter.load().summary(), indent=2))
    items = None
    if args.items:
        from dataio.files import read_items

        items = read_items(Path(args.items), default_created_at_ms=0)
    connection = connect(args.root, items)
    for name in QUERIES:
        columns, rows = run_sql(connection, name, args.start, args.end)
        print(f"\n{name}.sql: {len(rows)} rows")
        print("  " + " | ".join(columns))
        for row in rows[: args.rows]:
            print("  " + " | ".join("" if v is None else str(v) for v in row))
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
