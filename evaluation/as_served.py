"""Quality as served: the leave-one-out split of model_build, answered by the real recommend handler.

    python -m evaluation.as_served [--data movielens|ecommerce|DIR] [--model-dir DIR]
        [--split test|valid] [--variants report|short|tuning|caps] [--users N] [--out FILE] [--report]

Each user's history (everything before the held-out item, in time order; ties in source order, as
model_build splits it) is folded into a state with the ingest fold, as if the events had come
through the stream, and `GET /v1/recommendations?k=10` is answered by `functions/recommend/app.py`
with the settings of the recommend function in template.yaml (read from the file). The hit is the
held-out item: the last new item of the user (`--split test`) or the one before it (`--split
valid`, where the serving defaults are chosen). Variants change one thing at a time, so the cost
of each serving rule (exploration, the category cap, the co-occurrence blend, the order of
same-second events) is visible. Each answer's random draws (exploration) are seeded from the user,
so every variant sees the same draws and a rerun gives the same numbers.

`--report` writes the table into model_build/report.md (a section of its own, kept by
`make evaluate`'s MovieLens run); `make evaluate` runs it after model_build.evaluate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from model_build.report_sections import put_section

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
REPORT_MD = REPO_ROOT / "model_build" / "report.md"
SERVING_SETTINGS = (
    "RETRIEVAL_SIZE",
    "EXPLORATION_SHARE",
    "EXPLORATION_RATE",
    "NEW_ITEM_EXPLORATION_RATE",
    "GENRE_CAP_SHARE",
    "ROTATION_RATE",
    "ROTATION_TIME_SECONDS",
)
NOW_MS = 1_800_000_000_000
K = 10


def template_settings(template: Path = TEMPLATE) -> dict[str, str]:
    """The recommend function's ranking settings as template.yaml sets them (`NAME: "value"` lines)."""
    text = template.read_text()
    found: dict[str, str] = {}
    for name in SERVING_SETTINGS:
        values = re.findall(rf'^\s+{name}:\s*"?([^"\s#]+)"?', text, flags=re.MULTILINE)
        if len(set(values)) != 1:
            raise ValueError(f"template.yaml sets {name} {len(set(values))} ways; expected one value")
        found[name] = values[0]
    return found


class _Store:
    """The recommend handler's store, answering from prepared states."""

    def __init__(self) -> None:
        self.states: dict[str, Any] = {}

    def get(self, user_id: str, consistent: bool = True) -> Any:
        return self.states.get(user_id)


class _Context:
    function_name = "RecommendFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RecommendFunction"
    aws_request_id = "as-served"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _environment(model_dir: Path) -> None:
    template_env = {
        "USER_STATE_TABLE": "as-served",
        "MODEL_DIR": str(model_dir),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "rtrec",
        "POWERTOOLS_METRICS_NAMESPACE": "AsServed",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "PER_USER_REQUEST_RATE": "0",
        **template_settings(),
    }
    for name, value in template_env.items():
        os.environ[name] = value


History = list[tuple[str, str, float | None, int]]  # (item, event type, value, ts ms), oldest first


def histories(data: str, split: str, limit: int | None) -> list[tuple[str, History, str]]:
    """(user, history, held-out item) per user, split as model_build splits the dataset."""
    from model_build.data import leave_one_out, load_dataset

    users = []
    for s in leave_one_out(load_dataset(data)):
        if split == "valid":
            steps, stamps, target = s.train, s.train_timestamps, s.valid.item_id
        else:
            steps = s.test_history
            stamps = [*s.train_timestamps, s.valid_timestamp, *s.between_timestamps]
            target = s.test.item_id
        history = [(st.item_id, st.event_type, st.value, ts) for st, ts in zip(steps, stamps, strict=True)]
        users.append((s.user_id, history, target))
    return users[:limit] if limit else users


def evaluate(
    variants: dict[str, dict[str, Any]], users: list[tuple[str, History, str]], model_dir: Path
) -> dict[str, dict[str, float]]:
    """HR@10, NDCG@10 and how one category dominates the lists, per variant, through the handler."""
    _environment(model_dir)
    from functions.recommend import app
    from rtrec import paging
    from rtrec.events import Event
    from rtrec.state import fold

    store = _Store()
    app.user_states = store
    recommender = app.recommender
    catalog = recommender.catalog
    base_config, scorer = recommender.config, recommender.scorer
    base_blend = getattr(scorer, "blend", None)
    current_user = [""]

    def seeded_id(now_ms: int | None = None, marker: int = 0) -> str:
        # The answer's random draws come from its recommendation id (rtrec.paging): its time and random
        # bits fixed per user, every variant sees the same draws and reruns repeat the numbers.
        random_bytes = uuid.uuid5(uuid.NAMESPACE_URL, f"as-served/{current_user[0]}").bytes[:8]
        return paging.new_root(NOW_MS, marker, random_bytes=random_bytes)

    app._new_recommendation_id = seeded_id
    results: dict[str, dict[str, float]] = {}
    for name, variant in variants.items():
        recommender.config = _with(base_config, variant.get("config", {}))
        if scorer is not None and variant.get("blend") is False:
            scorer.blend = None
        hits = ndcg = top_share = 0.0
        started = time.perf_counter()
        for user, history, target in users:
            events = [
                Event(user, _event_id(user, n, variant), item, kind, ts, value)
                for n, (item, kind, value, ts) in enumerate(history)
            ]
            state = fold(None, user, events, catalog, NOW_MS).state
            if variant.get("ties_by_event_id"):
                state.recent.sort(key=lambda i: (i.ts, i.event_id))  # the rule before arrival order
            store.states[user] = state
            current_user[0] = user
            with contextlib.redirect_stdout(io.StringIO()):
                response = app.lambda_handler(_request(user), _Context())
            answer = json.loads(response["body"])["items"]
            items = [item["item_id"] for item in answer]
            if target in items:
                hits += 1
                ndcg += 1.0 / math.log2(items.index(target) + 2)
            counts = Counter(c for item in answer for c in item.get("categories", item.get("genres", [])))
            top_share += max(counts.values(), default=0) / max(1, len(answer))
        if scorer is not None:
            scorer.blend = base_blend
        count = max(1, len(users))
        results[name] = {
            "users": len(users),
            "hr@10": round(hits / count, 4),
            "ndcg@10": round(ndcg / count, 4),
            "top_category_share": round(top_share / count, 3),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(
            f"{name:<52} HR@10 {results[name]['hr@10']:.4f}  NDCG@10 {results[name]['ndcg@10']:.4f}  "
            f"top category {results[name]['top_category_share']:.2f}",
            flush=True,
        )
    recommender.config = base_config
    return results


def _event_id(user: str, n: int, variant: dict[str, Any]) -> str:
    # Clients send random ids (UUIDs): with the old tie rule their order decided same-second events.
    return (
        uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{n}").hex if variant.get("random_ids", True) else f"{n:06d}"
    )


def _request(user: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "GET /v1/recommendations",
        "rawPath": "/v1/recommendations",
        "rawQueryString": f"k={K}",
        "queryStringParameters": {"k": str(K)},
        "headers": {},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/recommendations", "sourceIp": "127.0.0.1"},
            "authorizer": {"jwt": {"claims": {"sub": user}, "scopes": []}},
            "requestId": uuid.uuid4().hex,
            "routeKey": "GET /v1/recommendations",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def _with(config: Any, changes: dict[str, Any]) -> Any:
    import dataclasses

    return dataclasses.replace(config, **changes)


NO_RULES = {"exploration_share": 0.0, "genre_cap_share": 1.0}
REPORT_VARIANTS: dict[str, dict[str, Any]] = {
    "as served (template defaults)": {},
    "no exploration": {"config": {"exploration_share": 0.0}},
    "exploration in every answer": {"config": {"exploration_rate": 1.0}},
    "no exploration, no category cap": {"config": NO_RULES},
    "no co-occurrence blend (template defaults otherwise)": {"blend": False},
    "model alone: no blend, no exploration, no cap": {"blend": False, "config": NO_RULES},
}
# What the template's defaults were chosen from (on the validation split): the cap, then exploration.
TUNING_VARIANTS: dict[str, dict[str, Any]] = {
    **{
        f"category cap {cap}, no exploration": {"config": {"exploration_share": 0.0, "genre_cap_share": cap}}
        for cap in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
    },
    **{
        f"exploration rate {rate} (template cap)": {"config": {"exploration_rate": rate}}
        for rate in (0.0, 0.1, 0.2, 0.5, 1.0)
    },
    "no co-occurrence blend, no rules": {"blend": False, "config": NO_RULES},
    "ties by event id, no exploration (the fold before arrival order)": {
        "ties_by_event_id": True,
        "config": {"exploration_share": 0.0},
    },
}

CAP_VARIANTS = {name: v for name, v in TUNING_VARIANTS.items() if name.startswith("category cap")}
# Two rows of the report, for a large catalogue (minutes a row) when the others need no rerun.
SHORT_VARIANTS = {
    name: REPORT_VARIANTS[name]
    for name in ("as served (template defaults)", "no co-occurrence blend (template defaults otherwise)")
}
VARIANT_SETS = {
    "report": REPORT_VARIANTS,
    "short": SHORT_VARIANTS,
    "tuning": TUNING_VARIANTS,
    "caps": CAP_VARIANTS,
}

SECTION_BEGIN = "<!-- section {name}: written by `python -m evaluation.as_served --report` -->"
SECTION_END = "<!-- end of section {name} -->"


def report_section(
    name: str, data: str, split: str, results: dict[str, dict[str, float]], version: str
) -> str:
    settings = template_settings()
    lines = [
        SECTION_BEGIN.format(name=name),
        f"## As served: {data}, {split} split ({time.strftime('%Y-%m-%d', time.gmtime())})",
        "",
        "`GET /v1/recommendations?k=10` answered by the recommend handler from a state the ingest fold "
        "built from the user's history, with template.yaml's settings ("
        + ", ".join(f"{k} {v}" for k, v in settings.items())
        + "); the hit is the held-out item. Top category = the average share of a list held by its "
        "most frequent category.",
        "",
        "| variant | HR@10 | NDCG@10 | top category |",
        "|---|---|---|---|",
    ]
    for variant, r in results.items():
        lines.append(f"| {variant} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['top_category_share']:.2f} |")
    lines += ["", f"Model version {version}.", SECTION_END.format(name=name), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="movielens", help="movielens, ecommerce or a directory")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: model_build's per dataset")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--variants", choices=tuple(VARIANT_SETS), default="report")
    parser.add_argument("--users", type=int, help="only the first N users (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="default: evaluation/as_served[-<data>].json")
    parser.add_argument("--report", action="store_true", help="write the table into model_build/report.md")
    args = parser.parse_args(argv)
    from model_build.train import data_slug, default_out, is_default_data

    model_dir = args.model_dir or default_out(args.data)
    suffix = "" if is_default_data(args.data) else f"-{data_slug(args.data)}"
    suffix += "" if args.split == "test" else f"-{args.split}"
    suffix += "" if args.variants == "report" else f"-{args.variants}"
    out = args.out or REPO_ROOT / "evaluation" / f"as_served{suffix}.json"
    variants = VARIANT_SETS[args.variants]
    results = evaluate(variants, histories(args.data, args.split, args.users), model_dir)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    if args.report:
        version = json.loads((model_dir / "metadata.json").read_text())["version"]
        name = "as-served" + ("" if is_default_data(args.data) else f"-{data_slug(args.data)}")
        section = report_section(name, args.data, args.split, results, version)
        REPORT_MD.write_text(put_section(REPORT_MD.read_text() if REPORT_MD.exists() else "", name, section))
        print(f"wrote the {name} section of {REPORT_MD}")


if __name__ == "__main__":
    main()
