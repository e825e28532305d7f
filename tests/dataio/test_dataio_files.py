"""FileAdapter: the same small dataset as JSONL, gzipped JSONL, CSV and Parquet; bad rows; the registry."""

from __future__ import annotations

import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.files import FileAdapter, InvalidRow, find_data_files, format_of, read_interactions, read_items

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENTS = [
    {"user_id": "alice", "item_id": "sku-1", "type": "view", "timestamp": 1_764_000_000_000},
    {
        "user_id": "alice",
        "item_id": "sku-2",
        "type": "add_to_cart",
        "value": 2,
        "timestamp": "2025-11-24T16:00:01Z",
    },
    {
        "user_id": "bob",
        "item_id": "sku-1",
        "type": "purchase",
        "value": 19.99,
        "timestamp": 1_764_000_000_500,
    },
    {"user_id": "bob", "item_id": "sku-3", "type": "rating", "value": 4.5, "timestamp": "1764000001000"},
]
ITEMS = [
    {
        "item_id": "sku-1",
        "categories": ["Home > Kitchen > Knives", "Sale"],
        "title": "Chef knife",
        "attributes": {"brand": "acme", "price": 19.99, "zip": "02134"},
        "available": True,
        "created_at": 1_700_000_000_000,
    },
    {"item_id": "sku-2", "categories": ["Books"], "attributes": {"brand": "globex"}, "available": False},
    {"item_id": "sku-3", "categories": [], "created_at": "2025-01-01T00:00:00Z"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def csv_files(directory: Path) -> tuple[Path, Path]:
    events = directory / "interactions.csv"
    events.write_text(
        "user_id,item_id,type,value,timestamp\n"
        "alice,sku-1,view,,1764000000000\n"
        "alice,sku-2,add_to_cart,2,2025-11-24T16:00:01Z\n"
        "bob,sku-1,purchase,19.99,1764000000500\n"
        "bob,sku-3,rating,4.5,1764000001000\n"
    )
    items = directory / "items.csv"
    items.write_text(
        "item_id,categories,title,available,created_at,brand,price,zip\n"
        "sku-1,Home > Kitchen > Knives|Sale,Chef knife,true,1700000000000,acme,19.99,02134\n"
        "sku-2,Books,,false,,globex,,\n"
        "sku-3,,,,2025-01-01T00:00:00Z,,,\n"
    )
    return events, items


def parquet_files(directory: Path) -> tuple[Path, Path]:
    duckdb = pytest.importorskip("duckdb")
    events, items = directory / "interactions.parquet", directory / "items.parquet"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * FROM (VALUES "
            "('alice', 'sku-1', 'view', NULL::DOUBLE, 1764000000000::BIGINT), "
            "('alice', 'sku-2', 'add_to_cart', 2.0, 1764000001000), "
            "('bob', 'sku-1', 'purchase', 19.99, 1764000000500), "
            "('bob', 'sku-3', 'rating', 4.5, 1764000001000)"
            ") AS t(user_id, item_id, type, value, timestamp)) "
            f"TO '{events}' (FORMAT parquet)"
        )
        con.execute(
            "COPY (SELECT * FROM (VALUES "
            "('sku-1', ['Home > Kitchen > Knives', 'Sale'], 'Chef knife', "
            " {'brand': 'acme', 'price': 19.99, 'zip': '02134'}, true, TIMESTAMP '2023-11-14 22:13:20'), "
            "('sku-2', ['Books'], NULL, {'brand': 'globex', 'price': NULL, 'zip': NULL}, false, NULL), "
            "('sku-3', []::VARCHAR[], NULL, NULL, NULL, TIMESTAMP '2025-01-01 00:00:00')"
            ") AS t(item_id, categories, title, attributes, available, created_at)) "
            f"TO '{items}' (FORMAT parquet)"
        )
    return events, items


def jsonl_files(directory: Path, suffix: str = ".jsonl") -> tuple[Path, Path]:
    return (
        write_jsonl(directory / f"interactions{suffix}", EVENTS),
        write_jsonl(directory / "items.jsonl", ITEMS),
    )


MAKERS = {
    "jsonl": jsonl_files,
    "jsonl.gz": lambda d: jsonl_files(d, ".jsonl.gz"),
    "csv": csv_files,
    "parquet": parquet_files,
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_every_format_loads_the_same_dataset(kind, tmp_path):
    events, items = MAKERS[kind](tmp_path)
    data = FileAdapter(events, items, now_ms=NOW_MS).load()
    inter = data.interactions
    assert data.name == tmp_path.name
    assert inter.user_ids.tolist() == ["alice", "alice", "bob", "bob"]
    assert inter.item_ids.tolist() == ["sku-1", "sku-2", "sku-1", "sku-3"]
    assert inter.types.tolist() == ["view", "add_to_cart", "purchase", "rating"]
    assert math.isnan(inter.values[0])
    assert inter.values[1:].tolist() == pytest.approx([2.0, 19.99, 4.5])
    assert inter.timestamps_ms.tolist() == [1764000000000, 1764000001000, 1764000000500, 1764000001000]
    assert inter.values.dtype == np.float32 and inter.timestamps_ms.dtype == np.int64

    knife, book, other = data.items
    assert knife.item_id == "sku-1" and knife.title == "Chef knife"
    assert knife.categories == ("Home > Kitchen > Knives", "Sale")
    assert dict(knife.attributes) == {"brand": "acme", "price": 19.99, "zip": "02134"}
    assert knife.available and knife.created_at == 1_700_000_000_000
    assert book.available is False and book.title is None and dict(book.attributes) == {"brand": "globex"}
    assert book.created_at == 0  # absent: default_created_at_ms
    assert other.categories == () and other.created_at == 1_735_689_600_000
    assert data.categories == ["Home > Kitchen > Knives", "Sale", "Books"]
    assert data.skipped_rows == {}
    assert len(data.fingerprint) == 64


def test_fingerprint_follows_the_bytes(tmp_path):
    events, items = jsonl_files(tmp_path)
    first = FileAdapter(events, items, now_ms=NOW_MS).load().fingerprint
    assert FileAdapter(events, items, now_ms=NOW_MS).load().fingerprint == first
    write_jsonl(events, EVENTS[:2])
    assert FileAdapter(events, items, now_ms=NOW_MS).load().fingerprint != first


def test_default_created_at_is_configurable(tmp_path):
    events, items = jsonl_files(tmp_path)
    data = FileAdapter(events, items, now_ms=NOW_MS, default_created_at_ms=123).load()
    assert data.items[1].created_at == 123


def test_csv_attributes_column_and_number_parsing(tmp_path):
    events, _ = csv_files(tmp_path)
    items = tmp_path / "items.csv"
    items.write_text(
        'item_id,categories,attributes,size,code,ratio\nx,A|B| |A,"{""colour"": ""red""}",42,007,-1.5e3\n'
    )
    (item,) = FileAdapter(events, items, now_ms=NOW_MS).load().items
    assert item.categories == ("A", "B")
    assert dict(item.attributes) == {"colour": "red", "size": 42.0, "code": "007", "ratio": -1500.0}


def event(**fields) -> dict:
    """A valid event with ``fields`` changed (None removes a field)."""
    row = {"user_id": "a", "item_id": "i", "type": "view", "timestamp": 1_764_000_000_000, **fields}
    return {k: v for k, v in row.items() if v is not None}


BAD_EVENTS = [
    (event(type="like"), "type must be one of"),
    (event(type="rating", value=6), "between 0 and 5"),
    (event(value=-1), "between 0 and"),
    (event(value="2"), "a number"),
    (event(timestamp=1_764_000_000), "epoch seconds"),
    (event(timestamp="2025-11-24T16:00:01"), "time zone"),
    (event(timestamp=2_000_000_000_000), "in the future"),
    (event(timestamp=946_000_000_000), "before 2000"),
    (event(timestamp=None), "timestamp is required"),
    (event(user_id=None), "user_id is required"),
    (event(item_id="x" * 65), "at most 64"),
    (event(user_id="a\n"), "control characters"),
    (event(user_id=["a"]), "non-empty string"),
    (event(valu=1), "unknown column"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_EVENTS)
def test_a_bad_interaction_names_its_file_and_line(row, reason, tmp_path):
    events, items = jsonl_files(tmp_path)
    write_jsonl(events, [*EVENTS[:2], row, *EVENTS[2:]])
    with pytest.raises(InvalidRow, match=reason) as caught:
        FileAdapter(events, items, now_ms=NOW_MS).load()
    assert str(caught.value).startswith(f"{events}:line 3: ")


def test_ignored_event_columns_are_accepted(tmp_path):
    events, items = jsonl_files(tmp_path)
    write_jsonl(events, [{**EVENTS[0], "event_id": "e1", "session_id": "s", "context": {"a": "b"}}])
    assert len(FileAdapter(events, items, now_ms=NOW_MS).load().interactions) == 1


def test_undecodable_lines_name_their_line(tmp_path):
    events, items = jsonl_files(tmp_path)
    events.write_text(json.dumps(EVENTS[0]) + "\n\n{not json\n[1, 2]\n")
    with pytest.raises(InvalidRow, match=r":line 3: not valid JSON"):
        FileAdapter(events, items, now_ms=NOW_MS).load()
    events.write_text(json.dumps(EVENTS[0]) + "\n" + '{"value": NaN}\n')
    with pytest.raises(InvalidRow, match=r":line 2: .*NaN"):
        FileAdapter(events, items, now_ms=NOW_MS).load()
    events.write_bytes(json.dumps(EVENTS[0]).encode() + b"\n" + b'{"user_id": "\xff"}\n')
    with pytest.raises(InvalidRow, match="not UTF-8"):
        FileAdapter(events, items, now_ms=NOW_MS).load()


BAD_ITEMS = [
    ({"item_id": "z", "categories": "Books"}, "categories must be a list"),
    ({"item_id": "z", "categories": ["x" * 65]}, "at most 64"),
    ({"item_id": "z", "categories": [], "attributes": {"on_sale": True}}, "a string or a number"),
    ({"item_id": "z", "categories": [], "attributes": {"nested": {"a": 1}}}, "flat"),
    ({"item_id": "z", "categories": [], "available": "yes"}, "available must be true or false"),
    ({"item_id": "z", "categories": [], "created_at": "yesterday"}, "created_at"),
    ({"item_id": "z", "categories": [], "colour": "red"}, "unknown field"),
    ({"categories": []}, "item_id must be"),
    ({"item_id": "sku-1", "categories": []}, r"repeats \(line 1\)"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_ITEMS)
def test_a_bad_item_names_its_file_and_line(row, reason, tmp_path):
    events, items = jsonl_files(tmp_path)
    write_jsonl(items, [*ITEMS[:2], row])
    with pytest.raises(InvalidRow, match=reason) as caught:
        FileAdapter(events, items, now_ms=NOW_MS).load()
    assert str(caught.value).startswith(f"{items}:line 3: ")


def test_bad_csv_rows_name_their_line(tmp_path):
    events, items = csv_files(tmp_path)
    events.write_text(
        "user_id,item_id,type,value,timestamp\n"
        "alice,sku-1,view,,1764000000000\n"
        "alice,sku-1,view,2,1764000000000,extra\n"
    )
    with pytest.raises(InvalidRow, match=r"interactions.csv:line 3: more fields"):
        FileAdapter(events, items, now_ms=NOW_MS).load()
    events.write_text("user_id,item_id,type,value,timestamp\nalice,sku-1,view,lots,1764000000000\n")
    with pytest.raises(InvalidRow, match=r"line 2: value must be a number"):
        FileAdapter(events, items, now_ms=NOW_MS).load()
    events.write_text("user_id,item_id,type,value,timestamp\nalice,sku-1,view\n")
    with pytest.raises(InvalidRow, match=r"line 2: fewer fields"):
        FileAdapter(events, items, now_ms=NOW_MS).load()
    csv_files(tmp_path)
    items.write_text("item_id,categories,available\nx,A,maybe\n")
    with pytest.raises(InvalidRow, match=r"items.csv:line 2: available must be true or false"):
        FileAdapter(events, items, now_ms=NOW_MS).load()


def test_skip_invalid_counts_and_keeps_the_rest(tmp_path, caplog):
    events, items = jsonl_files(tmp_path)
    bad_event = event(type="like")
    write_jsonl(events, [bad_event, *EVENTS, bad_event])
    write_jsonl(items, [*ITEMS, {"item_id": "sku-1", "categories": []}])
    data = FileAdapter(events, items, now_ms=NOW_MS, skip_invalid=True).load()
    assert len(data.interactions) == len(EVENTS) and len(data.items) == len(ITEMS)
    assert data.skipped_rows == {"interactions": 2, "items": 1}
    assert "interactions.jsonl:line 1: type must be one of" in caplog.text


def test_formats_by_name_and_missing_files(tmp_path):
    assert format_of(Path("a/INTERACTIONS.JSONL.GZ")) == "jsonl"
    assert format_of(Path("items.csv.gz")) == "csv"
    with pytest.raises(ValueError, match="unknown format"):
        format_of(Path("items.json"))
    with pytest.raises(FileNotFoundError):
        FileAdapter(tmp_path / "interactions.jsonl", tmp_path / "items.jsonl")


def test_find_data_files_and_the_registry(tmp_path):
    with pytest.raises(FileNotFoundError, match="found none"):
        find_data_files(tmp_path)
    events, items = jsonl_files(tmp_path)
    assert find_data_files(tmp_path) == (events, items)
    adapter = dataio.adapter_for(str(tmp_path))
    assert isinstance(adapter, FileAdapter) and adapter.interactions_path == events
    write_jsonl(tmp_path / "interactions.jsonl.gz", EVENTS)
    with pytest.raises(FileNotFoundError, match=r"interactions\.jsonl, interactions\.jsonl\.gz"):
        find_data_files(tmp_path)
    with pytest.raises(ValueError, match="unknown data spec"):
        dataio.adapter_for(str(tmp_path / "nowhere"))


def test_read_items_alone_defaults_created_at_to_now(tmp_path):
    _, items = jsonl_files(tmp_path)
    write_jsonl(items, [*ITEMS, {"item_id": "sku-1", "categories": []}])
    skipped: dict[str, int] = {}
    before = int(time.time() * 1000)
    read = read_items(items, skip_invalid=True, skipped=skipped)
    assert [item.item_id for item in read] == ["sku-1", "sku-2", "sku-3"] and skipped == {"items": 1}
    assert read[1].created_at >= before
    assert read_items(items, skip_invalid=True, default_created_at_ms=5)[1].created_at == 5


def test_read_interactions_alone(tmp_path):
    events, _ = csv_files(tmp_path)
    inter = read_interactions(events, now_ms=NOW_MS)
    assert len(inter) == 4 and inter.types.tolist()[-1] == "rating"


def test_describe_command(tmp_path, capsys):
    from dataio.__main__ import main

    jsonl_files(tmp_path)
    write_jsonl(tmp_path / "interactions.jsonl", [*EVENTS, event(type="like")])
    assert main([str(tmp_path), "--skip-invalid"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["interactions"] == len(EVENTS) and summary["skipped_rows"] == {"interactions": 1}


def test_integer_ids_are_read_as_text(tmp_path):
    events, items = jsonl_files(tmp_path)
    write_jsonl(events, [event(user_id=42, item_id=7)])
    write_jsonl(items, [{"item_id": 7, "categories": ["A"]}])
    data = FileAdapter(events, items, now_ms=NOW_MS).load()
    assert data.interactions.user_ids.tolist() == ["42"] and data.items[0].item_id == "7"
    write_jsonl(events, [event(user_id=True)])
    with pytest.raises(InvalidRow, match="user_id must be a non-empty string"):
        FileAdapter(events, items, now_ms=NOW_MS).load()


def test_parquet_nan_is_a_missing_value(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    events, items = tmp_path / "interactions.parquet", tmp_path / "items.parquet"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT 1 AS user_id, 7 AS item_id, 'view' AS type, 'NaN'::DOUBLE AS value, "
            f"1764000000000 AS timestamp) TO '{events}' (FORMAT parquet)"
        )
        con.execute(
            "COPY (SELECT 7 AS item_id, '[\"A\"]' AS categories, '{\"price\": 3}' AS attributes) "
            f"TO '{items}' (FORMAT parquet)"
        )
    data = FileAdapter(events, items, now_ms=NOW_MS).load()
    assert math.isnan(data.interactions.values[0]) and data.interactions.item_ids.tolist() == ["7"]
    assert data.items[0].categories == ("A",) and dict(data.items[0].attributes) == {"price": 3.0}
