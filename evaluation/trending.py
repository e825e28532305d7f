"""Does live popularity serve cold users better than the training split's counts? ML-100k in time order.

    python -m evaluation.trending [--cold-below 5] [--out evaluation/trending.json]

The ratings are replayed in time order (ties in file order). The global time cutoff
(`dataio.movielens.time_cutoff`, the replay's) splits them: the *static* popularity is the
interaction counts of the events at or before it, what a model trained at the cutoff carries in its
artifact. Every later event of a cold user (fewer than `--cold-below` earlier events) is a test: the
top 10 items the user has not interacted with yet, by

  static              the static counts alone (today's cold start and popular fallback)
  trending H, prior P the service's trending popularity at the event's time, from every earlier event:
                      `rtrec.trending` itself (hourly buckets, the trending weights, decay by half-life H
                      from each bucket's middle, a window of 4 half-lives, the static counts blended in
                      as P decayed events)

A hit is the event's item among the ten (HR@10). `stars` rows weigh ratings as the fold's interests do
(max(0, stars - 2): a 1-2 star rating adds nothing) instead of the trending rule (every rating 2).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataio.movielens import load_movielens, time_cutoff
from rtrec.events import Event
from rtrec.state import event_weight
from rtrec.trending import TrendingConfig, bucket_counts, decayed_scores, popularity_vector, trending_weight

K = 10
OUT_JSON = Path(__file__).resolve().parent / "trending.json"
HALF_LIVES_H = (24, 24 * 7, 24 * 30)
PRIORS = (0.0, 50.0, 500.0)
WEIGHTS = {"interactions": trending_weight, "stars": event_weight}


@dataclass(frozen=True)
class Variant:
    name: str
    config: TrendingConfig | None  # None = static counts only
    weights: str = "interactions"


def variants() -> list[Variant]:
    out = [Variant("static", None)]
    for hours in HALF_LIVES_H:
        for prior in PRIORS:
            config = TrendingConfig(
                bucket_s=3600,
                half_life_s=hours * 3600,
                window_buckets=4 * hours,
                shards=1,
                prior_events=prior,
            )
            out.append(Variant(f"trending H={_hours(hours)}, prior {prior:g}", config))
            if prior == 50.0:
                out.append(Variant(f"trending H={_hours(hours)}, prior {prior:g}, stars", config, "stars"))
    # The template's settings: daily buckets, 7-day half-life, a window of 28 buckets, prior 50.
    template = TrendingConfig(
        bucket_s=86400, half_life_s=7 * 86400, window_buckets=28, shards=1, prior_events=50
    )
    out.append(Variant("trending as the template sets it (daily buckets, H=7 d, prior 50)", template))
    return out


def _hours(hours: int) -> str:
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"


def wilson(hits: int, tests: int, z: float = 1.96) -> list[float]:
    """Wilson 95 % interval of a hit rate (tests of one user are not independent: read it as a floor)."""
    if tests == 0:
        return [0.0, 0.0]
    rate = hits / tests
    centre = (rate + z * z / (2 * tests)) / (1 + z * z / tests)
    half = z * math.sqrt(rate * (1 - rate) / tests + z * z / (4 * tests * tests)) / (1 + z * z / tests)
    return [round(centre - half, 4), round(centre + half, 4)]


def top_k(values: np.ndarray, seen: set[int]) -> np.ndarray:
    """The K best indices (0-based item positions) not in ``seen``, ties by position."""
    masked = values.copy()
    if seen:
        masked[list(seen)] = -np.inf
    ordered = np.argsort(-masked, kind="stable")[:K]
    return ordered[np.isfinite(masked[ordered])]


def run(cold_below: int) -> dict[str, Any]:
    data, _ = load_movielens()
    cutoff = time_cutoff(data)
    item_ids = list(data.catalog_item_ids)
    position = {item_id: n for n, item_id in enumerate(item_ids)}
    order = np.argsort(data.timestamps, kind="stable")
    static = np.zeros(len(item_ids), dtype=np.float64)
    for row in order[data.timestamps[order] <= cutoff]:
        static[position[data.item_ids[row]]] += 1

    chosen = variants()
    buckets: dict[tuple[str, int], dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    history: dict[str, set[int]] = defaultdict(set)
    hits = {v.name: 0 for v in chosen}
    tests = 0
    tested_users: set[str] = set()
    index_of = lambda item_id: position.get(item_id, -1) + 1  # noqa: E731
    # Events are counted once into hourly buckets and, for the template's variant, daily ones.
    widest = max(v.config.window_buckets * v.config.bucket_s for v in chosen if v.config is not None)
    counters = {
        width: TrendingConfig(bucket_s=width, window_buckets=widest // width + 1, shards=1)
        for width in sorted({v.config.bucket_s for v in chosen if v.config is not None})
    }
    started = time.perf_counter()
    for row in order:
        user_id, item_id = str(data.user_ids[row]), str(data.item_ids[row])
        ts_ms = int(data.timestamps[row]) * 1000
        seen = history[user_id]
        if data.timestamps[row] > cutoff and len(seen) < cold_below:
            tests += 1
            tested_users.add(user_id)
            target = position[item_id]
            for variant in chosen:
                if variant.config is None:
                    values = static
                else:
                    scores = decayed_scores(
                        buckets[(variant.weights, variant.config.bucket_s)], ts_ms, variant.config
                    )
                    values = popularity_vector(
                        scores, index_of, len(item_ids), static, variant.config.prior_events
                    )
                hits[variant.name] += int(target in top_k(values, seen))
        event = Event(
            user_id=user_id,
            event_id=str(row),
            item_id=item_id,
            type="rating",
            ts=ts_ms,
            value=float(data.ratings[row]),
        )
        for (name, rule), (width, counter) in itertools.product(WEIGHTS.items(), counters.items()):
            for (bucket, counted_item), weight in bucket_counts([event], ts_ms, counter, rule).items():
                per_item = buckets[(name, width)][bucket]
                per_item[counted_item] = per_item.get(counted_item, 0.0) + weight
        seen.add(position[item_id])
    rows = [
        {
            "variant": v.name,
            "half_life_h": None if v.config is None else v.config.half_life_s / 3600,
            "prior_events": None if v.config is None else v.config.prior_events,
            "hr_at_10": round(hits[v.name] / max(1, tests), 4),
            "hits": hits[v.name],
            "wilson_95": wilson(hits[v.name], tests),
        }
        for v in chosen
    ]
    return {
        "protocol": (
            f"ML-100k in time order; tests: each event after the 80% time cutoff of a user with fewer than "
            f"{cold_below} earlier events; top {K} unseen items; static = counts at or before the cutoff"
        ),
        "cold_below": cold_below,
        "tests": tests,
        "users": len(tested_users),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-below", type=int, default=5, help="a cold user has fewer earlier events")
    parser.add_argument("--out", type=Path, default=OUT_JSON)
    args = parser.parse_args(argv)
    result = run(args.cold_below)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['tests']} tests ({result['seconds']} s)")
    for row in result["rows"]:
        print(f"  {row['variant']:<42} HR@10 {row['hr_at_10']:.4f}")


if __name__ == "__main__":
    main()
