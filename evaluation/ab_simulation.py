"""Validate the experiment read-out: a user simulator on MovieLens-100k runs A/B and A/A tests.

    python -m evaluation.ab_simulation [--users N] [--aa-runs 40] [--out evaluation/ab_simulation.json]
    python -m evaluation.ab_simulation --through-stack [--archive .cache/experiment-archive] [--users N]

Offline (the first form): the recommenders are called directly, many A/A splits are cheap.

Through the stack (``--through-stack``, `make experiment-simulation`): the template's functions run in
this process against moto (`infra.local.inprocess`, the local stack's wiring), each experiment in a
fresh deployment whose experiment parameter (SSM) names it. Every user's history (the same 80 % cut)
goes through the real ingest handler; then the user asks the real recommend handler for ten items
(bucketed by the handler, the variant in the answer) and, if one of them is among their next ten
ratings, posts a `click` with the answer's `recommendation_id` to the real collect handler (and an
`add_to_cart` when they rated that item 4 or more: the conversion). The clicks go from the stream
through ingest, impressions through the log subscription's local stand-in, all into the archive under
``--archive``, which `evaluation.experiment_report` then reads. Experiments: model vs popular-only
(`popular_only`, A/B) and model vs model (A/A).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import experiment_report

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


def wilson_interval(clicks: int, users: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (the report's, `evaluation.experiment_report`)."""
    return experiment_report.wilson_interval(clicks, users, confidence)


def two_proportion_p_value(a: ArmResult, b: ArmResult) -> float:
    """Two-sided p-value of the z-test for a difference in click-through between two arms."""
    return experiment_report.two_proportion_z_test(a.clicks, a.users, b.clicks, b.users).p_value


def simulated_users(limit: int | None) -> list[tuple[str, list[tuple[str, float, int]], dict[str, float]]]:
    """(user, history before the cut, the next ten items with their ratings) per MovieLens user."""
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
        future = {str(data.item_ids[r]): float(data.ratings[r]) for r in rows[cut : cut + NEXT_ITEMS]}
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
        arm = "popular" if variant.settings.get("popular_only") else "model"
        if (user, arm) not in clicks:
            recommender = recommenders[arm]
            events = [
                Event(user, f"{user}-{n}", item, "rating", ts, stars)
                for n, (item, stars, ts) in enumerate(history)
            ]
            state = fold(None, user, events, recommender.catalog, NOW_MS).state
            outcome = recommender.recommend(state, K, np.random.default_rng(0))
            shown = {recommender.item_id_at(p.index) for p in outcome.picks}
            clicks[(user, arm)] = int(bool(shown & future.keys()))
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
    parser.add_argument("--through-stack", action="store_true", help="drive the real handlers (see above)")
    parser.add_argument("--archive", type=Path, default=REPO_ROOT / ".cache" / "experiment-archive")
    args = parser.parse_args()
    if args.through_stack:
        summary = simulate_through_stack(args.archive, [AB_EXPERIMENT, AA_EXPERIMENT], args.users)
        print(json.dumps(summary, indent=2))
        return

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
                {"name": "model", "settings": {}},
                {"name": "popular", "settings": {"popular_only": True}},
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
                    {"name": "a1", "settings": {}},
                    {"name": "a2", "settings": {}},
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


AB_EXPERIMENT = {
    "name": "model-vs-popular",
    "variants": [
        {"name": "model", "settings": {}},
        {"name": "popular", "settings": {"popular_only": True}},
    ],
}
AA_EXPERIMENT = {"name": "model-vs-model", "variants": [{"name": "a1"}, {"name": "a2"}]}
EXPERIMENT_PARAMETER = "/rtrec-simulation/experiment"
CONVERTING_RATING = 4.0  # a clicked item the user rated this or higher is also added to the cart
_MARKER = ".experiment-simulation"  # an archive directory this simulation made (and may clear)


def simulate_through_stack(
    archive: Path, experiments: list[dict[str, Any]], limit: int | None = None
) -> dict[str, Any]:
    """Run each experiment through the template's real handlers; impressions and events land in ``archive``.

    Returns per experiment the answers and clicks the simulator saw per variant (the report reads the
    archive, not this).
    """
    import shutil
    import time

    import boto3

    from evaluation.replay import use_in_memory_state
    from infra.local.inprocess import InProcessService
    from rtrec.events import Event

    if archive.exists() and any(archive.iterdir()):
        if not (archive / _MARKER).exists():
            raise SystemExit(
                f"{archive} is not empty and not a simulation's archive: choose another --archive"
            )
        shutil.rmtree(archive)
    archive.mkdir(parents=True)
    (archive / _MARKER).write_text("written by python -m evaluation.ab_simulation --through-stack\n")
    users = simulated_users(limit)
    newest = max(ts for _, history, _ in users for _, _, ts in history)
    shift_ms = int(time.time() * 1000) - 3_600_000 - newest  # the service refuses events before 2000
    environment = {
        "EXPERIMENT_PARAMETER": EXPERIMENT_PARAMETER,
        "EXPERIMENT_MAX_AGE_S": "1",
        "PER_USER_REQUEST_RATE": "0",
        "POWERTOOLS_LOG_LEVEL": "INFO",  # impressions are INFO lines
    }
    summary: dict[str, Any] = {"users": len(users), "archive": str(archive), "experiments": {}}
    for config in experiments:
        started = time.perf_counter()
        with InProcessService(
            REPO_ROOT / "template.yaml", environment, drop_metric_lines=True, archive_dir=archive
        ) as service:
            _quiet(service)
            use_in_memory_state(service)
            boto3.client("ssm").put_parameter(
                Name=EXPERIMENT_PARAMETER, Value=json.dumps(config), Type="String", Overwrite=True
            )
            history = [
                Event(user, f"ml-{user}-{item}", item, "rating", ts + shift_ms, stars)
                for user, events, _ in users
                for item, stars, ts in events
            ]
            for start in range(0, len(history), service.batch_size):
                chunk = history[start : start + service.batch_size]
                service.ingest((event.user_id, event.to_bytes()) for event in chunk)
            arms: dict[str, list[int]] = {}
            for user, _, future in users:
                status, body = service.http("GET", "/v1/recommendations", user, f"k={K}")
                if status != 200:
                    raise RuntimeError(f"GET /v1/recommendations answered {status}: {body}")
                tally = arms.setdefault(body["variant"], [0, 0, 0])
                tally[0] += 1
                hit = next((item["item_id"] for item in body["items"] if item["item_id"] in future), None)
                if hit is None:
                    continue
                tally[1] += 1
                _respond(service, user, body["recommendation_id"], hit, future[hit] >= CONVERTING_RATING)
                tally[2] += int(future[hit] >= CONVERTING_RATING)
            _drain_stream(service)
            service.flush_impressions()
        summary["experiments"][config["name"]] = {
            "answers_clicks_conversions": arms,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return summary


def _quiet(service: Any) -> None:
    """Keep the handlers' INFO lines off stdout (the impression sink still receives them)."""
    import logging

    for function in service.functions.values():
        handler = getattr(getattr(function.module, "logger", None), "registered_handler", None)
        if handler is not None:
            handler.setLevel(logging.WARNING)


def _respond(service: Any, user: str, recommendation_id: str, item_id: str, converts: bool) -> None:
    """The simulated user's click (and add to cart) through the real collect handler."""
    import time

    now_ms = int(time.time() * 1000)
    events = [
        {"event_id": f"click-{recommendation_id}", "item_id": item_id, "type": "click",
         "timestamp": now_ms, "recommendation_id": recommendation_id}
    ]  # fmt: skip
    if converts:
        events.append(
            {"event_id": f"cart-{recommendation_id}", "item_id": item_id, "type": "add_to_cart",
             "timestamp": now_ms + 1, "recommendation_id": recommendation_id}
        )  # fmt: skip
    status, body = service.http("POST", "/v1/events", user, body={"events": events})
    if status != 202 or body.get("rejected"):
        raise RuntimeError(f"POST /v1/events answered {status}: {body}")


def _drain_stream(service: Any) -> None:
    """What collect wrote to the stream, through ingest (and so into the archive), as the mapping would."""
    import boto3

    kinesis = boto3.client("kinesis")
    stream = service.stream_source.stream_name
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=service.batch_size)
            if not page["Records"]:
                break
            service.ingest((r["PartitionKey"], r["Data"]) for r in page["Records"])
            iterator = page.get("NextShardIterator")


if __name__ == "__main__":
    main()
