"""The event archive as a data source: the documented layout, read through ArchiveAdapter and sql/*.sql."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import pytest

from dataio import adapter_for
from dataio.archive import QUERIES, SQL_DIR, ArchiveAdapter, connect, run_sql, sql_text
from rtrec.catalog import CatalogItem
from rtrec.features import EVENT_TYPES

DAY_MS = 86_400_000
NOV_28 = 1_764_288_000_000  # 2025-11-28T00:00:00Z


def event(user: str, event_id: str, item: str, type_: str, ts: int, **extra) -> dict:
    return {"user_id": user, "event_id": event_id, "item_id": item, "type": type_, "ts": ts, **extra}


def write_file(root: Path, kind: str, day: str, name: str, lines: list) -> None:
    """One archive object: JSON lines (or raw text lines), gzip, in the documented layout."""
    directory = root / "events" / f"kind={kind}" / f"dt={day}"
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(
        (line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))) + "\n" for line in lines
    )
    (directory / f"{name}.jsonl.gz").write_bytes(gzip.compress(text.encode()))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    day1, day2, day3 = NOV_28, NOV_28 + DAY_MS, NOV_28 + 2 * DAY_MS
    write_file(tmp_path, "event", "2025-11-28", "a", [event("u1", "old", "i9", "view", day1 + 10)])
    write_file(
        tmp_path,
        "event",
        "2025-11-29",
        "b",
        [
            event("u1", "e1", "i1", "view", day2 + 100),
            event("u1", "e2", "i2", "rating", day2 + 50, value=4, session_id="s1"),
            event("u2", "e1", "i1", "click", day2 + 70),  # same event id, another user: not a copy
            "{broken json",
            event("u2", "bad-type", "i1", "teleport", day2 + 80),
        ],
    )
    write_file(
        tmp_path,
        "event",
        "2025-11-30",
        "c",
        [event("u1", "e3", "i3", "purchase", day3 + 5, value=20, context={"page": "home"})],
    )
    # A retry: the same two events again, in another object of the same day.
    write_file(
        tmp_path,
        "event",
        "2025-11-29",
        "d",
        [event("u1", "e1", "i1", "view", day2 + 100), event("u1", "e2", "i2", "rating", day2 + 50, value=4)],
    )
    write_file(
        tmp_path,
        "impression",
        "2025-11-29",
        "e",
        [{"user_id": "u1", "item_id": "i5", "ts": day2, "kind": "impression"}],
    )
    (tmp_path / "items.jsonl").write_text(
        "\n".join(
            json.dumps(item)
            for item in (
                {"item_id": "i1", "categories": ["shoes"], "title": "One"},
                {"item_id": "i2", "categories": ["shoes", "sale"]},
                {"item_id": "i3", "categories": ["bags"]},
                {"item_id": "i4", "categories": ["hats"]},
            )
        )
        + "\n"
    )
    return tmp_path


def test_window_filtering_and_deduplication(archive):
    dataset = ArchiveAdapter(archive, "2025-11-29", "2025-11-30").load()
    inter = dataset.interactions
    rows = list(zip(inter.user_ids.tolist(), inter.item_ids.tolist(), inter.types.tolist(), strict=True))
    # u1's copies of e1 and e2 read once; the day before the window, the impression, the broken line
    # and the unknown type are not interactions. Per user in time order.
    assert rows == [
        ("u1", "i2", "rating"),
        ("u1", "i1", "view"),
        ("u1", "i3", "purchase"),
        ("u2", "i1", "click"),
    ]
    assert inter.timestamps_ms.tolist()[0] == NOV_28 + DAY_MS + 50
    assert inter.values[0] == 4 and inter.values[2] == 20 and math.isnan(inter.values[1])
    assert dataset.skipped_rows == {"interactions": 2, "duplicate_events": 2}
    assert [item.item_id for item in dataset.items] == ["i2", "i1", "i3"]  # seen in the events
    assert all(item.categories == () for item in dataset.items)
    everything = ArchiveAdapter(archive).load()
    assert len(everything.interactions) == 5 and "old" not in everything.interactions.user_ids.tolist()
    assert len(ArchiveAdapter(archive, "2025-11-28", "2025-11-28").load().interactions) == 1
    assert len(ArchiveAdapter(archive, "2025-12-01").load().interactions) == 0


def test_items_come_from_the_items_file_when_given(archive):
    dataset = ArchiveAdapter(archive, items_path=archive / "items.jsonl").load()
    assert [item.item_id for item in dataset.items] == ["i1", "i2", "i3", "i4"]
    assert dataset.categories == ["shoes", "sale", "bags", "hats"]
    assert dataset.summary()["unknown_item_interactions"] == 1  # i9, on the 28th


def test_the_sql_files_on_duckdb(archive):
    items = [
        CatalogItem("i1", ("shoes",)),
        CatalogItem("i2", ("shoes", "sale")),
        CatalogItem("i3", ("bags",)),
        CatalogItem("i4", ("hats",)),
    ]
    connection = connect(archive, items)
    columns, rows = run_sql(connection, "interaction_sequences", "2025-11-29", "2025-11-30")
    assert columns[:5] == ["user_id", "step", "event_id", "item_id", "type"]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("u1", 1, "e2"),
        ("u1", 2, "e1"),
        ("u1", 3, "e3"),
        ("u2", 1, "e1"),
    ]

    columns, rows = run_sql(connection, "item_popularity", "2025-11-29", "2025-11-30")
    popularity = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    assert rows[0][0] == "i1"  # most interactions first
    assert (popularity["i1"]["interactions"], popularity["i1"]["users"]) == (2, 2)
    assert (popularity["i1"]["views"], popularity["i1"]["clicks"]) == (1, 1)
    assert popularity["i2"]["ratings"] == 1 and popularity["i2"]["mean_rating"] == 4
    assert popularity["i3"]["purchases"] == 1 and "i9" not in popularity

    columns, rows = run_sql(connection, "category_statistics", "2025-11-29", "2025-11-30")
    stats = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    assert list(stats) == ["shoes", "bags", "sale", "hats"]
    assert (stats["shoes"]["catalog_items"], stats["shoes"]["interactions"], stats["shoes"]["users"]) == (
        2,
        3,
        2,
    )
    assert stats["shoes"]["mean_rating"] == 4 and stats["bags"]["purchases"] == 1
    assert stats["hats"]["interactions"] == 0 and stats["hats"]["mean_rating"] is None
    assert math.isclose(sum(s["interaction_share"] for s in stats.values()), 1.0)
    assert math.isclose(stats["shoes"]["interaction_share"], 3 / 5)
    connection.close()


def test_an_empty_archive_reads_as_no_events(tmp_path):
    dataset = ArchiveAdapter(tmp_path).load()
    assert len(dataset.interactions) == 0 and dataset.items == []
    connection = connect(tmp_path, [CatalogItem("i1", ("x",))])
    for name in QUERIES:
        columns, rows = run_sql(connection, name)
        assert columns and (rows == [] or name == "category_statistics")
    connection.close()


def test_what_the_local_stack_writes_reads_back(tmp_path):
    from infra.local.archive import LocalArchive

    records = [event("u7", f"x{i}", f"i{i}", "click", NOV_28 + i * DAY_MS) for i in range(3)]
    data = [json.dumps(r, separators=(",", ":")).encode() for r in records]
    LocalArchive(tmp_path).write(data)
    LocalArchive(tmp_path).write(data[:1])  # delivered twice: read once
    dataset = ArchiveAdapter(tmp_path, "2025-11-28", "2025-11-29").load()
    assert dataset.interactions.item_ids.tolist() == ["i0", "i1"]


def test_fingerprint_follows_the_window_and_the_files(archive):
    first = ArchiveAdapter(archive, "2025-11-29", "2025-11-30")
    assert first.load().fingerprint == ArchiveAdapter(archive, "2025-11-29", "2025-11-30").load().fingerprint
    assert first.load().fingerprint != ArchiveAdapter(archive, "2025-11-28", "2025-11-30").load().fingerprint
    assert [p.parent.name for p in first.files()] == ["dt=2025-11-29", "dt=2025-11-29", "dt=2025-11-30"]
    before = first.load().fingerprint
    write_file(archive, "event", "2025-11-30", "z", [event("u3", "n", "i1", "view", NOV_28 + 2 * DAY_MS)])
    assert first.load().fingerprint != before


def test_archive_spec_in_adapter_for(archive):
    adapter = adapter_for(f"archive:{archive}?from=2025-11-29&to=2025-11-30&items={archive / 'items.jsonl'}")
    assert isinstance(adapter, ArchiveAdapter)
    assert adapter.window() == ("2025-11-29", "2025-11-30")
    assert len(adapter.load().interactions) == 4
    assert adapter_for(f"archive:{archive}").window() == ("0001-01-01", "9999-12-31")
    for bad in (f"archive:{archive}?since=2025-01-01", "archive:", f"archive:{archive / 'missing'}"):
        with pytest.raises(ValueError):
            adapter_for(bad)
    with pytest.raises(ValueError):
        ArchiveAdapter(archive, "29/11/2025").load()


def test_the_sql_files_share_the_window_parameters_and_the_event_rules():
    texts = {name: sql_text(name) for name in QUERIES}
    # attribution_*.sql read impressions too (evaluation.experiment_report, its own tests)
    features = sorted(p.stem for p in SQL_DIR.glob("*.sql") if not p.stem.startswith("attribution"))
    assert features == sorted(QUERIES)
    shared = re.compile(r"WITH windowed AS \(.*?\ndeduplicated AS \(.*?\n\)", re.DOTALL)
    ctes = {name: shared.search(text).group(0) for name, text in texts.items()}
    assert len(set(ctes.values())) == 1  # the same window, event rules and de-duplication everywhere
    for name, text in texts.items():
        # Two positional parameters and no other question mark (Athena counts every one).
        assert text.count("?") == 2 and "dt BETWEEN ? AND ?" in text, name
        assert not text.rstrip().endswith(";"), name  # Athena's StartQueryExecution takes one statement
    types = re.search(r"type IN \(([^)]*)\)", ctes["item_popularity"]).group(1)
    assert [t.strip().strip("'") for t in types.split(",")] == list(EVENT_TYPES)


def test_popularity_and_categories_are_ordered_by_interactions_then_name(tmp_path):
    day = NOV_28 + 1000
    lines = [event(f"u{n}", f"e{n}", "b-item", "view", day + n) for n in range(3)]
    write_file(tmp_path, "event", "2025-11-28", "x", [*lines, event("u9", "e9", "a-item", "view", day)])
    connection = connect(tmp_path, [CatalogItem("a-item", ("aa",)), CatalogItem("b-item", ("zz",))])
    _, rows = run_sql(connection, "item_popularity")
    assert [(r[0], r[1]) for r in rows] == [("b-item", 3), ("a-item", 1)]
    _, rows = run_sql(connection, "category_statistics")
    assert [(r[0], r[2]) for r in rows] == [("zz", 3), ("aa", 1)]
    connection.close()
