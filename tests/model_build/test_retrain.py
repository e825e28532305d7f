"""`python -m model_build.retrain`: the window, the held-out slice, the quality gate and the whole run on a
tiny archive (a small generated shop, one epoch of a small model) publishing to a moto registry."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import boto3
import numpy as np
import pytest

from dataio.dataset import Dataset, InteractionColumns
from model_build import retrain
from rtrec.catalog import CatalogItem
from rtrec.features import Catalog

BOOTSTRAP_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "model"
DAY = 86_400_000
BUCKET, POINTER = "test-retrain-models", "/rtrec/test/model-pointer"


def dataset(rows: list[tuple[str, str, str, int]]) -> Dataset:
    """(user, item, type, ts) rows, in that order; items are the ones named."""
    users, items, types, stamps = zip(*rows, strict=True)
    return Dataset(
        name="t",
        interactions=InteractionColumns(
            user_ids=np.array(users, dtype=object),
            item_ids=np.array(items, dtype=object),
            types=np.array(types, dtype=object),
            values=np.full(len(rows), np.nan, dtype=np.float32),
            timestamps_ms=np.array(stamps, dtype=np.int64),
        ),
        items=[CatalogItem(item_id=i, categories=("c",)) for i in dict.fromkeys(items)],
        fingerprint="t",
    )


def test_the_window_is_whole_utc_days():
    today = date(2026, 11, 30)
    assert retrain.window_days(7, None, None, today) == ("2026-11-24", "2026-11-30")
    assert retrain.window_days(None, "2026-11-01", None, today) == ("2026-11-01", "2026-11-30")
    assert retrain.window_days(None, "2026-11-01", "2026-11-02", today) == ("2026-11-01", "2026-11-02")
    for days, since, until in [(7, "2026-11-01", None), (None, None, None), (0, None, None)]:
        with pytest.raises(ValueError):
            retrain.window_days(days, since, until, today)
    with pytest.raises(ValueError, match="before"):
        retrain.window_days(None, "2026-11-02", "2026-11-01", today)


def test_each_users_last_new_item_in_the_final_days_is_held_out_and_leaves_training():
    last_day = 10 * DAY
    data = dataset(
        [
            ("a", "1", "view", last_day - 3 * DAY),
            ("a", "2", "view", last_day - 2 * DAY),
            ("a", "3", "view", last_day + 5),  # a's last new item, in the final day: held out
            ("a", "3", "click", last_day + 6),  # a repeat after it: history, never training after the target
            ("b", "1", "view", last_day - 3 * DAY),
            ("b", "2", "view", last_day - 2 * DAY),  # b's last new item is before the final day: b stays
            ("b", "2", "click", last_day + 1),
            ("c", "4", "view", last_day + 2),  # one new item only: no history to judge from
        ]
    )
    start = retrain.holdout_start_ms(data, 1)
    assert start == last_day
    training, held = retrain.hold_out(data, start)
    assert held.user_ids == ["a"] and held.targets == ["3"]
    assert [s.item_id for s in held.histories[0]] == ["1", "2"]
    kept = list(
        zip(training.interactions.user_ids.tolist(), training.interactions.item_ids.tolist(), strict=True)
    )
    assert ("a", "3") not in kept and ("a", "1") in kept and ("b", "2") in kept and ("c", "4") in kept
    assert len(training.interactions) == 6
    # Three final days reach back to b's last new item (2), two days before the end.
    assert retrain.hold_out(data, retrain.holdout_start_ms(data, 3))[1].user_ids == ["a", "b"]


class RankFirst:
    """A fake scorer over a catalog: every known target ranks at a fixed position."""

    def __init__(self, item_ids: list[str]) -> None:
        self.catalog = Catalog(
            item_ids=item_ids,
            category_ids=[[0] for _ in item_ids],
            popularity=np.zeros(len(item_ids), dtype=np.float32),
            categories=("c",),
        )
        self.best: str | None = None
        self.seen_inputs: list[np.ndarray] = []

    def score(self, items, signals, candidates):
        self.seen_inputs.append(np.asarray(items))
        scores = np.zeros(len(candidates), dtype=np.float32)
        scores[self.catalog.index_of(self.best) - 1] = 1.0
        return scores


def test_a_target_the_model_does_not_know_is_a_miss_and_unknown_history_is_left_out():
    from rtrec.features import HistoryStep

    held = retrain.HoldOut(
        user_ids=["a", "b"],
        histories=[[HistoryStep("x", "view"), HistoryStep("1", "view")], [HistoryStep("1", "view")]],
        targets=["2", "new-item"],
        timestamps_ms=[0, 0],
    )
    scorer = RankFirst(["1", "2", "3"])
    scorer.best = "2"
    ranks = retrain.ranks_on(scorer, held)
    assert ranks.tolist() == [0, 3]  # known target first; unknown target: past every item, a miss
    assert scorer.seen_inputs[0][-1] == 1 and scorer.seen_inputs[0][-2] == 0  # "x" left out of the input


def test_the_gate_publishes_a_better_or_equal_candidate_and_refuses_a_worse_one():
    serving = np.array([0, 3, 20, 50])  # NDCG@10 = (1 + 1/log2(5)) / 4
    better = retrain.gate(np.array([0, 0, 20, 50]), serving, tolerance=0.0)
    assert better["passed"] and better["difference"] > 0
    assert better["candidate"]["NDCG@10"] > better["serving"]["NDCG@10"]
    assert retrain.gate(serving.copy(), serving, tolerance=0.0)["passed"]  # equal: published
    worse = retrain.gate(np.array([0, 30, 20, 50]), serving, tolerance=0.005)
    assert not worse["passed"] and worse["difference"] < -0.005
    within = retrain.gate(np.array([0, 3, 20, 50]) + np.array([0, 1, 0, 0]), serving, tolerance=0.05)
    assert within["difference"] < 0 and within["passed"]  # a drop inside the tolerance still ships
    assert worse["metric"] == "NDCG@10" and worse["difference_standard_error"] > 0


# -- the whole run on a tiny archive -------------------------------------------------------------------
@pytest.fixture(scope="module")
def shop_archive(tmp_path_factory) -> Path:
    """A small generated shop written as the archive (events shifted to end now) plus its catalog export."""
    from dataio import synthetic
    from infra.local.archive import LocalArchive

    root = tmp_path_factory.mktemp("archive")
    data = synthetic.generate(synthetic.Config(items=80, categories=6, users=60, events=3000, days=6, seed=3))
    shift = int(time.time() * 1000) - 1000 - int(data.event_time.max())
    records = []
    for n, line in enumerate(synthetic.interaction_lines(data)):
        row = json.loads(line)
        record = {
            "user_id": row["user_id"],
            "event_id": f"e{n}",
            "item_id": row["item_id"],
            "type": row["type"],
        }
        record["ts"] = row["timestamp"] + shift
        if "value" in row:
            record["value"] = row["value"]
        records.append(json.dumps(record).encode())
    LocalArchive(root).write(records)
    (root / "catalog" / "items").mkdir(parents=True)
    (root / "catalog" / "items" / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in data.items))
    return root


def run_args(archive: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        *("--archive", str(archive), "--days", "7", "--epochs", "1", "--encoder-units", "8"),
        *(
            "--min-holdout",
            "5",
            "--out",
            str(tmp_path / "candidates"),
            "--report",
            str(tmp_path / "report.json"),
        ),
        *extra,
    ]


@pytest.mark.slow
def test_retrain_publishes_a_candidate_with_the_gate_in_its_manifest_then_refuses_a_worse_one(
    aws, shop_archive, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("tensorflow")
    s3, ssm = boto3.client("s3"), boto3.client("ssm")
    s3.create_bucket(Bucket=BUCKET)
    ssm.put_parameter(Name=POINTER, Value="bootstrap", Type="String")
    registry = ("--bucket", BUCKET, "--pointer", POINTER)

    # The serving model is the layer's (MovieLens): it knows none of the shop's items, every target a miss.
    assert retrain.main(run_args(shop_archive, tmp_path, *registry)) == retrain.EXIT_PUBLISHED
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "published"
    version = report["candidate"]["version"]
    assert ssm.get_parameter(Name=POINTER)["Parameter"]["Value"] == version
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"models/{version}/manifest.json")["Body"].read())
    gate = manifest["gate"]
    assert (
        gate["passed"]
        and gate["serving_version"] == json.loads((BOOTSTRAP_DIR / "metadata.json").read_text())["version"]
    )
    assert gate["serving"]["NDCG@10"] == 0.0 and gate["serving_knows_targets"] == 0
    assert gate["candidate"]["NDCG@10"] == manifest["metrics"]["holdout"]["candidate"]["NDCG@10"] > 0
    assert gate["holdout_users"] == manifest["metrics"]["holdout"]["users"] >= 5
    assert manifest["parent"] == "bootstrap"
    # the candidate carries the co-occurrence blend the build chose on its validation split (or none)
    candidate = json.loads(s3.get_object(Bucket=BUCKET, Key=f"models/{version}/metadata.json")["Body"].read())
    assert candidate["cooccurrence"]["chosen_on"].startswith("validation")
    assert ("cooccurrence.npz" in manifest["files"]) == ("serving" in candidate["cooccurrence"])
    window = manifest["data_window"]
    assert window["interactions"] > window["training_interactions"] > 0
    assert window["first_day"] <= window["holdout_from"][:10] <= window["last_day"]
    capsys.readouterr()

    # A worse candidate (the MovieLens model again, under a new version) against the published one: refused.
    worse = tmp_path / "worse"
    shutil.copytree(BOOTSTRAP_DIR, worse)
    metadata = json.loads((worse / "metadata.json").read_text())
    metadata["version"] = "worse-1"
    (worse / "metadata.json").write_text(json.dumps(metadata))
    monkeypatch.setattr(retrain, "train_candidate", lambda *a, **k: (worse, {"training": {"epochs": 0}}))
    assert retrain.main(run_args(shop_archive, tmp_path, *registry)) == retrain.EXIT_REFUSED
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["outcome"] == "refused" and report["gate"]["serving_version"] == version
    assert report["gate"]["candidate"]["NDCG@10"] < report["gate"]["serving"]["NDCG@10"]
    assert ssm.get_parameter(Name=POINTER)["Parameter"]["Value"] == version  # the pointer did not move
    assert "models/worse-1/manifest.json" not in {
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    }
    runs = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="retrain-runs/")["Contents"]]
    assert sorted(k.rsplit("-", 1)[-1] for k in runs) == ["published.json", "refused.json"]


def test_no_events_in_the_window_says_so(tmp_path, capsys):
    code = retrain.main(["--archive", str(tmp_path), "--days", "3", "--dry-run"])
    assert code == retrain.EXIT_NO_DATA
    assert "no events" in capsys.readouterr().err


def test_too_few_held_out_users_is_not_enough_to_judge(shop_archive, tmp_path, capsys):
    code = retrain.main(run_args(shop_archive, tmp_path, "--dry-run", "--min-holdout", "100000"))
    assert code == retrain.EXIT_NO_DATA
    assert "fewer than --min-holdout" in capsys.readouterr().err


def test_an_archive_in_s3_is_copied_for_the_window_only(aws, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="archive")
    keys = [
        "events/kind=event/dt=2026-11-28/a.jsonl.gz",  # before the window
        "events/kind=event/dt=2026-11-29/b.jsonl.gz",
        "events/kind=event/dt=2026-11-30/c.jsonl.gz",
        "events/kind=impression/dt=2026-11-30/d.jsonl.gz",  # not an event: training reads events only
        "errors/processing-failed/dt=2026-11-30/e.jsonl.gz",
        "catalog/items/items.jsonl",
    ]
    for key in keys:
        s3.put_object(Bucket="archive", Key=f"prod/{key}", Body=b"x")
    root = retrain.sync_archive(s3, "s3://archive/prod", "2026-11-29", "2026-11-30", tmp_path / "copy")
    copied = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert copied == [
        "catalog/items/items.jsonl",
        "events/kind=event/dt=2026-11-29/b.jsonl.gz",
        "events/kind=event/dt=2026-11-30/c.jsonl.gz",
    ]
    assert retrain.catalog_export(root) == root / "catalog" / "items" / "items.jsonl"
