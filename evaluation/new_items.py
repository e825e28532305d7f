"""New items without retraining: how often and how well items the model never saw are recommended.

    python -m evaluation.new_items [--epochs N] [--retrain] [--out evaluation/new_items.json]

1. Cut MovieLens-100k at the replay's global time cutoff (``dataio.movielens.time_cutoff``, the last
   20 % of the ratings after it). The new items are the items first rated after the cutoff.
2. The users active after the cutoff are split in two halves by a hash of their id. The *teach* half's
   post-cutoff ratings are training data; the *test* half's are replayed. So a model can "know" the new
   items only from other users' ratings, never from the events it is tested on.
3. Two models, trained by model_build's pipeline with the same schedule on the same events:
     cold    every rating up to the cutoff plus the teach half's later ratings, minus every rating
             of a new item; the new items are not in its catalog at all.
     knew    the same ratings with the new items' ratings kept: a model that knew them.
4. Each arm is served by the real handlers in process (``infra.local.inprocess``: moto, the template's
   environment). In the cold arm the new items are written through the catalog handler
   (``PUT /v1/items/{item_id}`` with their genres as categories) before the replay; the recommend
   handler's live catalog picks them up, gives them metadata vectors and retrieves them.
5. The test half's history up to the cutoff is ingested through the ingest handler; then every later
   rating of theirs, in time order: ``GET /v1/recommendations?k=10`` first, then the rating is ingested.
   Each answer is asked once per serving variant (the state does not depend on the answers).

Reported per arm and variant: share of answers with at least one new item, share of slots holding a
new item, coverage (share of new items recommended at least once), and HR@10 / NDCG@10 on the replayed
ratings whose item is a new item (and on all replayed ratings, to see what the change costs elsewhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dataio.movielens import Interactions, load_movielens, time_cutoff
from model_build import data as model_data
from model_build import report_sections

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"
OUT_JSON = Path(__file__).resolve().parent / "new_items.json"
MODEL_DIRS = {"cold": model_data.WORK_DIR / "new-items-cold", "knew": model_data.WORK_DIR / "new-items-knew"}
K = 10
SECTION = "new-items"


@dataclasses.dataclass
class Split:
    cutoff: int
    new_items: list[str]
    train_rows: np.ndarray  # rows the models learn from (cold also drops the new items' rows)
    history_rows: np.ndarray  # test users' rows up to the cutoff, time order
    replay_rows: np.ndarray  # test users' rows after the cutoff, time order


def test_half(user_id: str) -> bool:
    """A fixed half of the users, by a hash of the id (not by arrival, which would bias the halves)."""
    return hashlib.sha256(user_id.encode()).digest()[0] % 2 == 1


def split(data: Interactions) -> Split:
    cutoff = time_cutoff(data)
    order = np.argsort(data.timestamps, kind="stable")
    first_seen: dict[str, int] = {}
    for row in order.tolist():
        first_seen.setdefault(str(data.item_ids[row]), int(data.timestamps[row]))
    new_items = sorted(item for item, ts in first_seen.items() if ts > cutoff)
    after = data.timestamps[order] > cutoff
    tested = np.fromiter((test_half(str(u)) for u in data.user_ids[order]), dtype=bool, count=len(order))
    return Split(
        cutoff=cutoff,
        new_items=new_items,
        train_rows=order[~after | ~tested],
        history_rows=order[~after & tested],
        replay_rows=order[after & tested],
    )


def training_data(data: Interactions, rows: np.ndarray, drop_items: set[str]) -> Interactions:
    """The interactions at ``rows`` minus those on ``drop_items``; the item table minus them too."""
    rows = rows[~np.isin(data.item_ids[rows], sorted(drop_items))] if drop_items else rows
    rows = np.sort(rows)  # file order, as the loader gives it (training sorts by time, ties in file order)
    keep = [n for n, item in enumerate(data.catalog_item_ids) if item not in drop_items]
    return replace(
        data,
        user_ids=data.user_ids[rows],
        item_ids=data.item_ids[rows],
        ratings=data.ratings[rows],
        timestamps=data.timestamps[rows],
        catalog_item_ids=[data.catalog_item_ids[n] for n in keep],
        catalog_genre_ids=[data.catalog_genre_ids[n] for n in keep],
    )


def train_arms(data: Interactions, cut: Split, epochs: int, data_sha: str, retrain: bool) -> dict[str, Any]:
    """Train (or reuse) both models, one after the other: same events, same schedule, same seed."""
    from evaluation.replay import train_history_model

    info: dict[str, Any] = {}
    for arm, drop in (("cold", set(cut.new_items)), ("knew", set())):
        out_dir = MODEL_DIRS[arm]
        history = training_data(data, cut.train_rows, drop)
        marker = out_dir / "metadata.json"
        cached = json.loads(marker.read_text()) if marker.exists() else {}
        if retrain or cached.get("training", {}).get("epochs") != epochs or not marker.exists():
            print(f"training the {arm} model ({len(history)} ratings, {epochs} epochs)...", flush=True)
            started = time.time()
            train_history_model(history, out_dir, epochs, data_sha)
            print(f"  {arm} trained in {time.time() - started:.0f} s", flush=True)
        info[arm] = {
            "ratings": len(history),
            "items": len(history.catalog_item_ids),
            "dir": str(out_dir.relative_to(REPO_ROOT)),
        }
    return info


VARIANTS: dict[str, dict[str, Any]] = {
    "as served": {},  # the template's settings
    "no exploration": {"config": {"exploration_share": 0.0}},
    "new-item slot in 20 % of answers": {"config": {"new_item_rate": 0.2}, "arms": ("cold",)},
    # What the service did before new items were retrieved: they could not reach an organic answer.
    "new items hidden (before)": {"hide_new": True, "arms": ("cold",)},
}


def ingest(service: Any, events: list[Any]) -> None:
    for start in range(0, len(events), service.batch_size):
        response = service.ingest(
            (e.user_id, e.to_bytes()) for e in events[start : start + service.batch_size]
        )
        if response.get("batchItemFailures"):
            raise RuntimeError(f"ingest reported failures: {response}")


def add_new_items(service: Any, data: Interactions, new_items: list[str], created_at: int) -> int:
    """The new items through the catalog handler's batch route, with their genres as categories."""
    from dataio.movielens import GENRES

    genres = dict(zip(data.catalog_item_ids, data.catalog_genre_ids, strict=True))
    written = 0
    for start in range(0, len(new_items), 100):
        items = [
            {"item_id": item, "categories": [GENRES[g] for g in genres[item]], "created_at": created_at}
            for item in new_items[start : start + 100]
        ]
        status, body = service.http("POST", "/v1/items/batch", "catalog-admin", body={"items": items})
        if status != 200 or body["rejected"]:
            raise RuntimeError(f"the catalog handler answered {status}: {body}")
        written += int(body["written"])
    return written


def replay_arm(arm: str, data: Interactions, cut: Split) -> dict[str, Any]:
    """Serve one arm in process and replay the test half; per variant, how often and how well."""
    from evaluation.replay import to_event, use_in_memory_state
    from infra.local.inprocess import InProcessService

    shift_ms = int(time.time() * 1000) - 60_000 - int(data.timestamps.max()) * 1000
    environment = {
        "MODEL_DIR": str(MODEL_DIRS[arm]),
        "PER_USER_REQUEST_RATE": "0",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    new_items = set(cut.new_items)
    variants = {name: v for name, v in VARIANTS.items() if arm in v.get("arms", (arm,))}
    counts = {name: _Tally() for name in variants}
    hidden = "&exclude=" + ",".join(cut.new_items)
    started = time.time()
    with InProcessService(TEMPLATE, environment, drop_metric_lines=True) as service:
        use_in_memory_state(service)
        recommend = service.route_function("GET", "/v1/recommendations").module
        written = (
            add_new_items(service, data, cut.new_items, int(cut.cutoff) * 1000 + shift_ms)
            if arm == "cold"
            else 0
        )
        history = [to_event(data, int(row), shift_ms) for row in cut.history_rows]
        ingest(service, history)
        base = recommend.recommender.config
        for n, row in enumerate(cut.replay_rows, start=1):
            event = to_event(data, int(row), shift_ms)
            for name, variant in variants.items():
                recommend.recommender.config = dataclasses.replace(base, **variant.get("config", {}))
                query = f"k={K}" + (hidden if variant.get("hide_new") else "")
                status, body = service.http("GET", "/v1/recommendations", event.user_id, query=query)
                if status != 200:
                    raise RuntimeError(f"GET /v1/recommendations answered {status}: {body}")
                counts[name].add(body["items"], event.item_id, new_items)
            recommend.recommender.config = base
            ingest(service, [event])
            if n % 2000 == 0:
                print(f"  {arm}: {n}/{len(cut.replay_rows)} events", flush=True)
        live = recommend.recommender.live
        known = len(live) - live.model_size if live is not None else 0
    return {
        "items_added_through_the_catalog_api": written,
        "new_items_in_the_live_catalog": known,
        "variants": {name: tally.summary(len(new_items)) for name, tally in counts.items()},
        "seconds": round(time.time() - started, 1),
    }


class _Tally:
    """Answers and hits of one variant."""

    def __init__(self) -> None:
        self.answers = self.with_new = self.slots = self.new_slots = 0
        self.reasons: dict[str, int] = {}
        self.shown: set[str] = set()
        self.ranks_all: list[int] = []
        self.ranks_new: list[int] = []

    def add(self, items: list[dict[str, Any]], target: str, new_items: set[str]) -> None:
        ids = [item["item_id"] for item in items]
        fresh = [item for item in items if item["item_id"] in new_items]
        self.answers += 1
        self.with_new += bool(fresh)
        self.slots += len(ids)
        self.new_slots += len(fresh)
        self.shown.update(item["item_id"] for item in fresh)
        for item in fresh:
            self.reasons[item["reason"]] = self.reasons.get(item["reason"], 0) + 1
        rank = ids.index(target) if target in ids else K
        self.ranks_all.append(rank)
        if target in new_items:
            self.ranks_new.append(rank)

    def summary(self, new_item_count: int) -> dict[str, Any]:
        return {
            "answers": self.answers,
            "answers_with_a_new_item": round(self.with_new / max(1, self.answers), 4),
            "slots_with_a_new_item": round(self.new_slots / max(1, self.slots), 4),
            "new_items_recommended": len(self.shown),
            "coverage_of_new_items": round(len(self.shown) / max(1, new_item_count), 4),
            "new_item_reasons": dict(sorted(self.reasons.items())),
            "targets_new": len(self.ranks_new),
            "new": _quality(self.ranks_new),
            "all": _quality(self.ranks_all),
        }


def _quality(ranks: list[int]) -> dict[str, float]:
    if not ranks:
        return {"HR@10": 0.0, "NDCG@10": 0.0}
    hits = [r for r in ranks if r < K]
    return {
        "HR@10": round(len(hits) / len(ranks), 4),
        "NDCG@10": round(sum(1.0 / math.log2(r + 2) for r in hits) / len(ranks), 4),
    }


VECTOR_VARIANTS: dict[str, dict[str, Any]] = {
    "mean of the items sharing a category (similar's before)": {"power": 0.0, "keep_norm": False},
    "weighted by overlap ** 4, length kept": {"power": 4.0},
    "weighted by overlap ** 2 × popularity, length kept": {"power": 2.0, "popularity": True},
    "weighted by overlap ** 4 × popularity, length kept (served)": {"power": 4.0, "popularity": True},
    "weighted by overlap ** 4 × popularity, mean length": {
        "power": 4.0,
        "popularity": True,
        "keep_norm": False,
    },
    "weighted by overlap ** 8 × popularity, length kept": {"power": 8.0, "popularity": True},
}


def compare_vectors(data: Interactions, cut: Split) -> dict[str, Any]:
    """Offline: how each way of making a new item's vector ranks the replayed ratings of new items.

    The scorers directly, no serving rules: every unseen item (model items and new items together) ranked
    by the scoring head, given the user's ratings before the one tested. HR@10 / NDCG@10 over that whole
    ranking, and the reciprocal rank of the target among the new items alone (what orders the exploration
    slot). The last row is the *knew* model ranking the same items, which it learnt from other users.
    """
    from dataio.movielens import GENRES
    from rtrec.catalog import CatalogItem
    from rtrec.features import HistoryStep, encode_history
    from rtrec.live_catalog import LiveCatalog
    from rtrec.scorer import Scorer
    from rtrec.stores.catalog import CatalogChange

    genres = dict(zip(data.catalog_item_ids, data.catalog_genre_ids, strict=True))
    added = [CatalogItem(item, tuple(GENRES[g] for g in genres[item])) for item in cut.new_items]

    class _Feed:
        def changes_since(self, updated_after_ms: int) -> list[CatalogChange]:
            return [CatalogChange(item, False, 1) for item in added]

    by_user: dict[str, list[int]] = {}
    for row in np.concatenate([cut.history_rows, cut.replay_rows]).tolist():
        by_user.setdefault(str(data.user_ids[row]), []).append(row)
    replayed, new_items = set(cut.replay_rows.tolist()), set(cut.new_items)
    targets = []  # (history steps, seen item ids, target) per replayed rating of a new item
    for rows in by_user.values():
        rows.sort(key=lambda r: int(data.timestamps[r]))  # stable: ties keep file order
        for n, row in enumerate(rows):
            if row in replayed and str(data.item_ids[row]) in new_items:
                steps = [
                    HistoryStep(str(data.item_ids[r]), "rating", float(data.ratings[r])) for r in rows[:n]
                ]
                targets.append((steps, {step.item_id for step in steps}, str(data.item_ids[row])))

    def measure(scorer: Scorer, item_ids: list[str]) -> dict[str, float]:
        ids = np.array(item_ids)
        fresh = np.isin(ids, cut.new_items)
        hits = ndcg = reciprocal = 0.0
        for steps, seen, target in targets:
            user = scorer.user_vector(*encode_history(steps, scorer.catalog))
            assert scorer._head is not None
            scores = scorer._head(user, np.arange(1, len(ids) + 1))
            allowed = ~np.isin(ids, sorted(seen))
            score = scores[item_ids.index(target)]
            rank = int((scores[allowed] > score).sum())
            hits += rank < K
            ndcg += 1.0 / math.log2(rank + 2) if rank < K else 0.0
            reciprocal += 1.0 / (int((scores[allowed & fresh] > score).sum()) + 1)
        count = max(1, len(targets))
        return {
            "HR@10": round(hits / count, 4),
            "NDCG@10": round(ndcg / count, 4),
            "MRR among new items": round(reciprocal / count, 4),
        }

    results: dict[str, Any] = {"targets": len(targets)}
    cold = Scorer.load(MODEL_DIRS["cold"])
    live = LiveCatalog(cold.catalog, _Feed())
    live.refresh()
    live_ids = [live.item_at(i) for i in range(1, len(live) + 1)]
    for name, options in VECTOR_VARIANTS.items():
        options = dict(options)
        popularity = cold.catalog.popularity if options.pop("popularity", False) else None
        cold.set_extra_items(live.new_item_vectors(cold.item_vectors, popularity, **options))
        results[name] = measure(cold, live_ids)
        print(f"{name:<62} {results[name]}", flush=True)
    knew = Scorer.load(MODEL_DIRS["knew"])
    results["knew model (reference)"] = measure(knew, list(knew.catalog.item_ids))
    print(f"{'knew model (reference)':<62} {results['knew model (reference)']}", flush=True)
    return results


SECTION_BEGIN = f"<!-- section {SECTION}: written by `python -m evaluation.new_items` -->"
SECTION_END = f"<!-- end of section {SECTION} -->"
REPORT_MD = REPO_ROOT / "model_build" / "report.md"


def section(report: dict[str, Any]) -> str:
    """The dated summary kept in model_build/report.md (``model_build.evaluate`` carries it over)."""
    ratings = report["ratings"]
    lines = [
        SECTION_BEGIN,
        f"## New items without retraining (MovieLens-100k, {report['date']})",
        "",
        f"Cutoff at the replay's time cutoff ({report['time_cutoff']}; the last 20 % of the ratings "
        f"follow it): {report['new_items']} items are first rated after it. The users active after the "
        f"cutoff are split in two halves by a hash of their id: the test half's {ratings['replayed']} later "
        f"ratings are replayed ({ratings['replayed_on_new_items']} of them on a new item), the other half's "
        "later ratings are training data. *cold*: trained on every rating up to the cutoff plus the other "
        "half's later ratings, minus every rating of a new item, which is not in its catalog; the new items "
        "are written through the catalog handler (`POST /v1/items/batch`, genres as categories) before the "
        f"replay. *knew*: the same ratings with the new items' {ratings['training_on_new_items_in_knew']} "
        "kept (a model that knew them from other users). Both: model_build's pipeline, "
        f"{report['epochs']} epochs, the same seed. Served by the real handlers in process "
        "(`infra.local.inprocess`, the template's settings); before each replayed rating "
        "`GET /v1/recommendations?k=10` is asked once per variant, then the rating is ingested.",
        "",
        "| model | variant | answers with a new item | slots with a new item | new items shown | "
        "new-item picks (reason) | HR@10 / NDCG@10, ratings of new items | HR@10 / NDCG@10, all ratings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, result in report["arms"].items():
        for name, v in result["variants"].items():
            reasons = ", ".join(f"{r} {n}" for r, n in v["new_item_reasons"].items()) or "–"
            lines.append(
                f"| {arm} | {name} | {v['answers_with_a_new_item']:.3f} | {v['slots_with_a_new_item']:.4f} | "
                f"{v['new_items_recommended']} of {report['new_items']} | {reasons} | "
                f"{v['new']['HR@10']:.3f} / {v['new']['NDCG@10']:.3f} (n = {v['targets_new']}) | "
                f"{v['all']['HR@10']:.4f} / {v['all']['NDCG@10']:.4f} |"
            )
    vectors = report.get("vectors_offline") or {}
    if vectors:
        lines += [
            "",
            f"How a new item's vector is made (offline, the cold model's scorer without serving rules, "
            f"{vectors['targets']} replayed ratings of new items; every unseen item ranked by the head):",
            "",
            "| vector of a new item | HR@10 | NDCG@10 | MRR among the new items |",
            "|---|---|---|---|",
        ]
        for name, v in vectors.items():
            if name != "targets":
                lines.append(
                    f"| {name} | {v['HR@10']:.3f} | {v['NDCG@10']:.3f} | {v['MRR among new items']:.3f} |"
                )
    lines += [
        "",
        "Exploration draws from each answer's random recommendation id, so rows with exploration vary a "
        "little between runs. Details: `evaluation/new_items.json`.",
        SECTION_END,
        "",
    ]
    return "\n".join(lines)


def put_section(path: Path, text: str) -> None:
    """Replace the section in ``path``, or append it."""
    markdown = path.read_text() if path.exists() else ""
    path.write_text(report_sections.put_section(markdown, SECTION, text))


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", "8")))
    parser.add_argument("--retrain", action="store_true", help="retrain both models")
    parser.add_argument("--train-only", action="store_true", help="train (or reuse) the models and stop")
    parser.add_argument("--vectors-only", action="store_true", help="only the offline comparison of vectors")
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    data, data_sha = load_movielens()
    cut = split(data)
    print(
        f"cutoff {cut.cutoff}: {len(cut.new_items)} new items; {len(cut.train_rows)} training ratings, "
        f"{len(cut.history_rows)} history and {len(cut.replay_rows)} replayed ratings of the test half",
        flush=True,
    )
    models = train_arms(data, cut, args.epochs, data_sha, args.retrain)
    if args.train_only:
        print(json.dumps(models))
        return
    vectors = compare_vectors(data, cut)
    if args.vectors_only:
        return
    arms = {arm: replay_arm(arm, data, cut) for arm in ("cold", "knew")}
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "k": K,
        "time_cutoff": cut.cutoff,
        "new_items": len(cut.new_items),
        "ratings": {
            "training": len(cut.train_rows),
            "test_half_history": len(cut.history_rows),
            "replayed": len(cut.replay_rows),
            "replayed_on_new_items": int(np.isin(data.item_ids[cut.replay_rows], cut.new_items).sum()),
            "training_on_new_items_in_knew": int(np.isin(data.item_ids[cut.train_rows], cut.new_items).sum()),
        },
        "epochs": args.epochs,
        "models": models,
        "vectors_offline": vectors,
        "arms": arms,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    put_section(REPORT_MD, section(report))
    print(section(report))
    print(f"wrote {args.out} and the {SECTION} section of {REPORT_MD.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
