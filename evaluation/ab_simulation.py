"""Validate the experiment read-out offline: a user simulator on MovieLens-100k runs A/B and A/A tests.

    python -m evaluation.ab_simulation [--users N] [--aa-runs 40] [--out evaluation/ab_simulation.json]

Each user's history up to a cut (the first 80 % of their ratings, in time order) is folded into a state;
the user is bucketed into a variant by `rtrec.experiments` and shown one top-10 list by the variant's
recommender. The simulated user clicks the list if one of its items is among their next ten ratings.
The read-out is click-through per variant with Wilson 95 % intervals and a two-sided two-proportion
z-test. The A/B test (model vs most popular) must find the difference; the A/A tests (the same model
in both arms, under many experiment names, i.e. many random splits) must find none more often than
the stated 5 %.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
NEXT_ITEMS = 10
K = 10
ALPHA = 0.05
NOW_MS = 1_800_000_000_000


@dataclass(frozen=True)
class ArmResult:
    users: int
    clicks: int

    @property
    def rate(self) -> float:
        return self.clicks / self.users if self.users else 0.0


def wilson_interval(clicks: int, users: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if users == 0:
        return (0.0, 1.0)
    p = clicks / users
    centre = (p + z * z / (2 * users)) / (1 + z * z / users)
    half = z * math.sqrt(p * (1 - p) / users + z * z / (4 * users * users)) / (1 + z * z / users)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p_value(a: ArmResult, b: ArmResult) -> float:
    """Two-sided p-value of the z-test for a difference in click-through between two arms."""
    pooled = (a.clicks + b.clicks) / (a.users + b.users)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.users + 1 / b.users))
    if se == 0:
        return 1.0
    z = (a.rate - b.rate) / se
    return math.erfc(abs(z) / math.sqrt(2))


def simulated_users(limit: int | None) -> list[tuple[str, list[tuple[str, float, int]], set[str]]]:
    """(user, history before the cut, the next ten items) per MovieLens user with enough ratings."""
    from dataio.movielens import load_movielens

    data, _ = load_movielens()
    order = np.argsort(data.timestamps, kind="stable")
    rows_by_user: dict[str, list[int]] = {}
    for row in order.tolist():
        rows_by_user.setdefault(str(data.user_ids[row]), []).append(row)
    users = []
    for user, rows in rows_by_user.items():
        cut = int(len(rows) * 0.8)
        if cut < 5 or len(rows) - cut < 2:
            continue
        history = [
            (str(data.item_ids[r]), float(data.ratings[r]), int(data.timestamps[r]) * 1000)
            for r in rows[:cut]
        ]
        future = {str(data.item_ids[r]) for r in rows[cut : cut + NEXT_ITEMS]}
        users.append((user, history, future))
    return users[:limit] if limit else users


def run(
    experiment_config: dict[str, Any], users: list[Any], recommenders: dict[str, Any], clicks: dict[Any, int]
) -> dict[str, Any]:
    """Bucket, show one list per user, read out click-through per variant (``clicks`` memoises a user's
    response to an arm's list: the lists are deterministic, so every A/A split reuses them)."""
    from rtrec.events import Event
    from rtrec.experiments import parse_experiment
    from rtrec.state import fold

    experiment = parse_experiment(experiment_config)
    arms = {v.name: [0, 0] for v in experiment.variants}
    for user, history, future in users:
        variant = experiment.assign(user, NOW_MS)
        assert variant is not None
        arm = variant.settings["recommender"]
        if (user, arm) not in clicks:
            recommender = recommenders[arm]
            events = [
                Event(user, f"{user}-{n}", item, "rating", ts, stars)
                for n, (item, stars, ts) in enumerate(history)
            ]
            state = fold(None, user, events, recommender.catalog, NOW_MS).state
            outcome = recommender.recommend(state, K, np.random.default_rng(0))
            shown = {recommender.item_id_at(p.index) for p in outcome.picks}
            clicks[(user, arm)] = int(bool(shown & future))
        arms[variant.name][0] += 1
        arms[variant.name][1] += clicks[(user, arm)]
    results = {name: ArmResult(n, clicks) for name, (n, clicks) in arms.items()}
    names = list(results)
    p_value = two_proportion_p_value(results[names[0]], results[names[1]])
    return {
        "experiment": experiment.name,
        "arms": {
            name: {
                "users": r.users,
                "clicks": r.clicks,
                "ctr": round(r.rate, 4),
                "ci95": [round(x, 4) for x in wilson_interval(r.clicks, r.users)],
            }
            for name, r in results.items()
        },
        "p_value": p_value,
        "significant": p_value < ALPHA,
    }


class _Popular:
    """The "most popular" arm: the same recommender without the model (its popularity fallback)."""

    def __new__(cls, model_recommender: Any) -> Any:
        from rtrec.recommender import Recommender

        return Recommender(
            model_recommender.catalog, None, model_recommender.config, load_error="popular arm"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int)
    parser.add_argument("--aa-runs", type=int, default=40, help="A/A tests, each a different random split")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "evaluation" / "ab_simulation.json")
    args = parser.parse_args()

    from rtrec.recommender import Recommender, RecommenderConfig

    config = RecommenderConfig(exploration_share=0.0)
    model = Recommender.from_model_dir(REPO_ROOT / "layers" / "model" / "model", config)
    recommenders = {"model": model, "popular": _Popular(model)}
    users = simulated_users(args.users)
    clicks: dict[Any, int] = {}

    ab = run(
        {
            "name": "model-vs-popular",
            "variants": [
                {"name": "model", "settings": {"recommender": "model"}},
                {"name": "popular", "settings": {"recommender": "popular"}},
            ],
        },
        users,
        recommenders,
        clicks,
    )
    print(f"A/B model vs popular: {json.dumps(ab['arms'])}")
    print(f"      p={ab['p_value']:.2e} significant={ab['significant']}")
    aa_runs = [
        run(
            {
                "name": f"aa-{n}",
                "variants": [
                    {"name": "a1", "settings": {"recommender": "model"}},
                    {"name": "a2", "settings": {"recommender": "model"}},
                ],
            },
            users,
            recommenders,
            clicks,
        )
        for n in range(args.aa_runs)
    ]
    false_positives = sum(run_["significant"] for run_ in aa_runs)
    print(
        f"A/A: {false_positives} of {len(aa_runs)} splits significant at {ALPHA} (expected about {ALPHA:.0%})"
    )
    args.out.write_text(
        json.dumps(
            {
                "users": len(users),
                "alpha": ALPHA,
                "ab": ab,
                "aa": {
                    "runs": len(aa_runs),
                    "false_positives": false_positives,
                    "first": aa_runs[0] if aa_runs else None,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
