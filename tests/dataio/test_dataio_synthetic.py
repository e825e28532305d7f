"""The generated e-commerce dataset: deterministic, shaped as promised, readable by FileAdapter, learnable."""

from __future__ import annotations

import gzip
import itertools
import json
import time
from collections import Counter, defaultdict

import numpy as np
import pytest

import dataio
from dataio import synthetic
from dataio.files import FileAdapter, find_data_files

SMALL = synthetic.Config(items=600, categories=40, users=150, events=8_000, seed=3)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ecommerce")
    synthetic.write(out, SMALL)
    return out


@pytest.fixture(scope="module")
def small_rows(small_dir):
    with gzip.open(small_dir / synthetic.INTERACTIONS_FILE, "rt") as handle:
        events = [json.loads(line) for line in handle]
    items = [json.loads(line) for line in (small_dir / synthetic.ITEMS_FILE).read_text().splitlines()]
    return events, items


def test_same_seed_same_bytes_other_seed_other_data(small_dir, tmp_path):
    again = tmp_path / "again"
    synthetic.write(again, SMALL)
    for name in (synthetic.INTERACTIONS_FILE, synthetic.ITEMS_FILE, synthetic.GENERATOR_FILE):
        assert (again / name).read_bytes() == (small_dir / name).read_bytes()
    other = tmp_path / "other"
    synthetic.write(other, synthetic.Config(**{**SMALL.__dict__, "seed": 4}))
    assert (other / synthetic.INTERACTIONS_FILE).read_bytes() != (
        small_dir / synthetic.INTERACTIONS_FILE
    ).read_bytes()


def test_catalog_shape(small_rows):
    _, items = small_rows
    assert len(items) == SMALL.items
    assert len({item["item_id"] for item in items}) == SMALL.items
    vocabulary = {c for item in items for c in item["categories"]}
    assert len(vocabulary) == SMALL.categories  # every category holds at least one item
    assert all(len(c.split(" > ")) == 3 for c in vocabulary)
    sizes = Counter(len(item["categories"]) for item in items)
    assert set(sizes) <= {1, 2, 3} and sizes[1] > sizes[2] > sizes[3] > 0
    prices = np.array([item["attributes"]["price"] for item in items])
    assert (prices > 0).all() and np.median(prices) < prices.mean()  # log-normal: right-skewed
    brands = Counter(item["attributes"]["brand"] for item in items)
    top = brands.most_common()
    assert top[0][1] > 5 * top[-1][1]  # Zipf: a few brands hold many items
    created = np.array([item["created_at"] for item in items])
    new = created >= SMALL.start_ms
    assert 0.05 < new.mean() < 0.3  # some items appear during the event window
    assert 0 < sum(not item["available"] for item in items) < 0.1 * SMALL.items


def test_events_shape_and_funnel(small_rows):
    events, items = small_rows
    assert len(events) == SMALL.events
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)  # written in time order
    assert SMALL.start_ms <= stamps[0] and stamps[-1] <= SMALL.end_ms
    created = {item["item_id"]: item["created_at"] for item in items}
    assert all(created[e["item_id"]] <= e["timestamp"] for e in events)  # nothing is seen before it exists
    counts = Counter(e["type"] for e in events)
    assert set(counts) == {"view", "click", "add_to_cart", "purchase"}
    assert 0.15 < counts["click"] / counts["view"] < 0.35
    assert 0.05 < counts["add_to_cart"] / counts["click"] < 0.25
    assert 0.3 < counts["purchase"] / counts["add_to_cart"] < 0.7
    earlier = {"click": "view", "add_to_cart": "click", "purchase": "add_to_cart"}
    seen: set[tuple[str, str, str]] = set()
    for e in events:
        if e["type"] in earlier:
            assert (e["user_id"], e["item_id"], earlier[e["type"]]) in seen, e
        seen.add((e["user_id"], e["item_id"], e["type"]))
    price = {item["item_id"]: item["attributes"]["price"] for item in items}
    for e in events:
        if e["type"] == "add_to_cart":
            assert e["value"] in (1, 2, 3)
        elif e["type"] == "purchase":
            assert any(abs(e["value"] - price[e["item_id"]] * q) < 0.011 for q in (1, 2, 3))
        else:
            assert "value" not in e


def test_round_trip_through_the_file_adapter(small_dir, small_rows):
    events, items = small_rows
    data = FileAdapter(*find_data_files(small_dir)).load()
    assert data.skipped_rows == {}
    inter = data.interactions
    assert inter.user_ids.tolist() == [e["user_id"] for e in events]
    assert inter.item_ids.tolist() == [e["item_id"] for e in events]
    assert inter.types.tolist() == [e["type"] for e in events]
    assert inter.timestamps_ms.tolist() == [e["timestamp"] for e in events]
    expected_values = np.array([e.get("value", np.nan) for e in events], dtype=np.float32)
    np.testing.assert_array_equal(inter.values, expected_values)
    assert [item.to_record() for item in data.items] == items
    assert len(data.categories) == SMALL.categories
    assert data.summary()["unknown_item_interactions"] == 0


def _hit_rates(events: list[dict]) -> tuple[float, float]:
    """HR@10 of the last item per user: most popular vs last-item transitions (a minimal sequence model)."""
    sequences: dict[str, list[str]] = defaultdict(list)
    for e in events:
        items = sequences[e["user_id"]]
        if not items or items[-1] != e["item_id"]:
            items.append(e["item_id"])
    histories = [(s[:-1], s[-1]) for s in sequences.values() if len(s) >= 3]
    popular = [item for item, _ in Counter(i for h, _ in histories for i in h).most_common(10)]
    transitions: dict[str, Counter] = defaultdict(Counter)
    for history, _ in histories:
        for a, b in itertools.pairwise(history):
            transitions[a][b] += 1
    pop_hits = seq_hits = 0
    for history, target in histories:
        candidates = [i for i, _ in transitions[history[-1]].most_common(10)]
        candidates += [i for i in popular if i not in candidates][: 10 - len(candidates)]
        pop_hits += target in popular
        seq_hits += target in candidates
    return pop_hits / len(histories), seq_hits / len(histories)


def test_the_sequence_signal_beats_most_popular():
    config = synthetic.Config(items=3_000, categories=60, users=800, events=60_000, seed=11)
    data = synthetic.generate(config)
    events = [
        {"user_id": str(u), "item_id": str(i)}
        for u, i in zip(data.event_user.tolist(), data.event_item.tolist(), strict=True)
    ]
    popular, sequence = _hit_rates(events)
    assert sequence > 0.1 and sequence > 4 * popular, (popular, sequence)


def _interest_shift(config: synthetic.Config) -> float:
    """Mean total-variation distance between a user's category mix in the first and last third of views."""
    data = synthetic.generate(config)
    primary = data.catalog.primary
    views = data.event_kind == 0
    users, items = data.event_user[views], data.event_item[views]
    shifts = []
    for user in np.unique(users):
        cats = primary[items[users == user]]
        if len(cats) < 60:
            continue
        third = len(cats) // 3
        first = np.bincount(cats[:third], minlength=config.categories) / third
        last = np.bincount(cats[-third:], minlength=config.categories) / third
        shifts.append(0.5 * np.abs(first - last).sum())
    assert len(shifts) > 20
    return float(np.mean(shifts))


def test_interests_drift(monkeypatch):
    config = synthetic.Config(items=2_000, categories=60, users=300, events=40_000, seed=5)
    drifting = _interest_shift(config)
    monkeypatch.setattr(synthetic, "P_DRIFT", 0.0)
    steady = _interest_shift(config)
    assert drifting > steady + 0.05, (drifting, steady)  # seeds 5-8: about +0.10


def test_category_names():
    names, departments, groups = synthetic.category_names(150)
    assert len(set(names)) == 150 and len(set(departments.tolist())) == len(synthetic.TAXONOMY)
    assert names[0] == "Home > Kitchen > Knives"
    assert all(name.split(" > ")[0] in synthetic.TAXONOMY for name in names)
    assert (groups >= 0).all() and len(set(groups.tolist())) == 3 * len(synthetic.TAXONOMY)
    many, _, _ = synthetic.category_names(400)
    assert len(set(many)) == 400 and all(len(name) <= 64 for name in many)


def test_config_is_checked():
    with pytest.raises(ValueError, match="categories must not exceed items"):
        synthetic.Config(items=10, categories=11)
    with pytest.raises(ValueError, match="events must be at least 1"):
        synthetic.Config(events=0)


def test_ensure_generates_once_per_config(tmp_path):
    config = synthetic.Config(items=100, categories=10, users=20, events=500)
    synthetic.ensure(tmp_path, config)
    written = (tmp_path / synthetic.INTERACTIONS_FILE).stat().st_mtime_ns
    time.sleep(0.01)
    synthetic.ensure(tmp_path, config)
    assert (tmp_path / synthetic.INTERACTIONS_FILE).stat().st_mtime_ns == written
    synthetic.ensure(tmp_path, synthetic.Config(items=100, categories=10, users=20, events=400))
    assert json.loads((tmp_path / synthetic.GENERATOR_FILE).read_text())["counts"]["events"] == 400


def test_command_line(tmp_path, capsys):
    args = [
        "--out",
        str(tmp_path),
        "--items",
        "100",
        "--categories",
        "10",
        "--users",
        "20",
        "--events",
        "300",
    ]
    assert synthetic.main([*args, "--seed", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == 300 and printed["items"] == 100
    assert find_data_files(tmp_path) == (tmp_path / "interactions.jsonl.gz", tmp_path / "items.jsonl")


@pytest.mark.slow
def test_default_size_is_fast_and_loads_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "DEFAULT_OUT", tmp_path / "ecommerce")
    started = time.perf_counter()
    adapter = dataio.adapter_for("ecommerce")  # generates the default dataset on first use
    generated = time.perf_counter() - started
    assert generated < 60
    data = adapter.load()
    assert data.name == "ecommerce"
    summary = data.summary()
    assert summary["interactions"] == 300_000 and summary["items"] == 20_000 and summary["categories"] == 150
    assert summary["users"] > 4_000 and summary["unknown_item_interactions"] == 0


def test_every_category_has_an_item_before_the_window():
    data = synthetic.generate(synthetic.Config(items=40, categories=30, users=5, events=200, seed=2))
    catalog = data.catalog
    old = catalog.created_at < synthetic.Config().start_ms
    assert set(catalog.primary[old].tolist()) == set(range(30))
    assert (data.event_item >= 0).all()
    assert (catalog.created_at[data.event_item] <= data.event_time).all()
