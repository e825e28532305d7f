"""`make experiment-report`: the read-out of the experiments in an event archive (impressions + events).

    python -m evaluation.experiment_report ARCHIVE [--experiment NAME] [--from DAY] [--to DAY]
        [--window-minutes 30] [--alpha 0.05] [--max-degraded-share 0.05] [--max-latency-p95-ms 250]
        [--model-dir layers/model/model] [--out evaluation/experiment_report]

Reads the archive with DuckDB (`dataio.archive.connect` plus the view `impressions` over
``events/kind=impression/``) and the attribution SQL (`sql/attribution_*.sql`, the same files Athena
runs on the Glue tables). Per experiment and variant it reports:

- click-through: the share of answers with at least one attributed click (and CTR@1/5/10, by position
  and by reason), with a Wilson score interval at the stated confidence;
- conversion: the share of answers with an attributed add_to_cart or purchase within the window;
- coverage (distinct items shown / catalog items), novelty (mean -log2 of the share of the archive's
  users who interacted with a shown item) and intra-list diversity (mean 1 - Jaccard of the categories
  of two items of a list);
- a significance test: each variant against the control (``--control``; by default a variant named
  control, model, a1 or a, else the first by name), a two-sided two-proportion
  z-test on click-through and on conversion at ``alpha``; with more than two variants the level is
  divided by the number of comparisons (Bonferroni);
- guardrails: a variant whose degraded share or p95 latency (the handler's, from the impressions)
  crosses its threshold is flagged;
- with ``--resplits N``, an A/A check of the test on the experiment's own answers: N times, the users
  are split in two halves by a hash of the user and a fresh name (`rtrec.experiments.bucket`) whatever
  their variant, so both halves get the same mixture, and the share of splits the test calls
  significant at ``alpha`` is reported (it should be about ``alpha``).

The unit is the answer (one impression); the simulator shows one answer per user, so answers and users
coincide there. Writes ``<out>.md``, ``<out>.json`` and ``<out>.png`` (click-through and conversion per
variant with their intervals).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "evaluation" / "experiment_report"
ATTRIBUTION_QUERIES = (
    "attribution_lists",
    "attribution_by_variant",
    "attribution_by_position",
    "attribution_by_reason",
)
IMPRESSIONS_GLOB = "events/kind=impression/dt=*/*.jsonl.gz"
# The Glue table `impressions` (template.yaml ArchiveImpressionsTable), in DuckDB's types.
IMPRESSION_COLUMNS = {
    "recommendation_id": "VARCHAR",
    "user_id": "VARCHAR",
    "route": "VARCHAR",
    "experiment": "VARCHAR",
    "variant": "VARCHAR",
    "model_version": "VARCHAR",
    "source": "VARCHAR",
    "degraded": "BOOLEAN",
    "latency_ms": "DOUBLE",
    "ts": "BIGINT",
    "items": "VARCHAR[][]",
}


# ---------- statistics ----------
def z_for(confidence: float) -> float:
    """The two-sided normal quantile for a confidence level (0.95 -> 1.95996)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion."""
    if trials == 0:
        return (0.0, 1.0)
    z = z_for(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class ProportionTest:
    """A two-sided two-proportion z-test (pooled standard error) of b's rate against a's."""

    difference: float
    z: float
    p_value: float


def two_proportion_z_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> ProportionTest:
    """Whether two proportions differ: z = (p_b - p_a) / sqrt(p(1-p)(1/n_a + 1/n_b)), p pooled."""
    if trials_a == 0 or trials_b == 0:
        return ProportionTest(0.0, 0.0, 1.0)
    rate_a, rate_b = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if se == 0:
        return ProportionTest(rate_b - rate_a, 0.0, 1.0)
    z = (rate_b - rate_a) / se
    return ProportionTest(rate_b - rate_a, z, math.erfc(abs(z) / math.sqrt(2)))


# ---------- the archive ----------
def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(root: str | Path, items: list[Any] | None = None) -> Any:
    """DuckDB over the archive: ``events`` and ``items`` (dataio.archive) and ``impressions``."""
    from dataio.archive import connect as connect_archive

    connection = connect_archive(root, items)
    pattern = Path(root) / IMPRESSIONS_GLOB
    if any(Path(root).glob(IMPRESSIONS_GLOB)):
        columns = (
            "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in IMPRESSION_COLUMNS.items()) + "}"
        )
        connection.execute(
            f"CREATE VIEW impressions AS SELECT * FROM read_json({_literal(str(pattern))}, "
            f"format = 'newline_delimited', columns = {columns}, hive_partitioning = true, "
            "hive_types = {'kind': 'VARCHAR', 'dt': 'VARCHAR'}, ignore_errors = true) "
            "WHERE kind = 'impression'"
        )
    else:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in IMPRESSION_COLUMNS.items())
        connection.execute(
            f"CREATE VIEW impressions AS SELECT {nulls}, CAST(NULL AS VARCHAR) AS dt WHERE false"
        )
    return connection


def run_attribution(
    connection: Any,
    name: str,
    first_day: str,
    last_day: str,
    window_ms: int,
    events_last_day: str | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``sql/<name>.sql``: impressions of [first_day, last_day], events to a day later by default."""
    from dataio.archive import sql_text

    if events_last_day is None:
        events_last_day = _next_day(last_day)
    result = connection.execute(sql_text(name), [first_day, last_day, first_day, events_last_day, window_ms])
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def _next_day(day: str) -> str:
    if day >= "9999-12-31":
        return day
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


# ---------- the read-out ----------
def _percentile(values: list[float], share: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, share * 100)) if values else None


def list_metrics(
    connection: Any, first_day: str, last_day: str, categories: dict[str, frozenset[str]]
) -> dict[tuple[str, str], dict[str, float]]:
    """Coverage, novelty and diversity per (experiment, variant), from the lists shown."""
    rows = connection.execute(
        "SELECT experiment, variant, items FROM impressions "
        "WHERE dt BETWEEN ? AND ? AND experiment IS NOT NULL AND variant IS NOT NULL "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY recommendation_id ORDER BY ts) = 1",
        [first_day, last_day],
    ).fetchall()
    users_total, users_by_item = _item_users(connection)
    by_arm: dict[tuple[str, str], list[list[str]]] = {}
    for experiment, variant, items in rows:
        by_arm.setdefault((experiment, variant), []).append([entry[0] for entry in items or []])
    out = {}
    for arm, lists in by_arm.items():
        shown = {item for shown_list in lists for item in shown_list}
        novelty = [
            -math.log2((users_by_item.get(item, 0) + 1) / (users_total + 1))
            for shown_list in lists
            for item in shown_list
        ]
        diversity = [d for d in (_intra_list_diversity(s, categories) for s in lists) if d is not None]
        out[arm] = {
            "coverage": len(shown) / len(categories) if categories else float("nan"),
            "items_shown": len(shown),
            "novelty": sum(novelty) / len(novelty) if novelty else float("nan"),
            "diversity": sum(diversity) / len(diversity) if diversity else float("nan"),
        }
    return out


def _item_users(connection: Any) -> tuple[int, dict[str, int]]:
    """Users in the archive's events, and per item the users who interacted with it (novelty's base)."""
    total = connection.execute(
        "SELECT COUNT(DISTINCT user_id) FROM events WHERE kind = 'event' AND item_id IS NOT NULL"
    ).fetchone()[0]
    rows = connection.execute(
        "SELECT item_id, COUNT(DISTINCT user_id) FROM events WHERE kind = 'event' AND item_id IS NOT NULL "
        "GROUP BY item_id"
    ).fetchall()
    return int(total or 0), {item: int(users) for item, users in rows}


def _intra_list_diversity(items: list[str], categories: dict[str, frozenset[str]]) -> float | None:
    """Mean over the list's item pairs of 1 - Jaccard(categories); None for lists under two items."""
    if len(items) < 2:
        return None
    distances = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            a, b = categories.get(items[i], frozenset()), categories.get(items[j], frozenset())
            union = a | b
            distances.append(1.0 - (len(a & b) / len(union) if union else 1.0))
    return sum(distances) / len(distances)


def build_report(
    connection: Any,
    *,
    first_day: str,
    last_day: str,
    window_ms: int,
    alpha: float,
    max_degraded_share: float,
    max_latency_p95_ms: float,
    categories: dict[str, frozenset[str]],
    experiment: str | None = None,
    control: str | None = None,
    resplits: int = 0,
) -> dict[str, Any]:
    """The read-out of every experiment in the window (or of ``experiment``), as JSON-ready data."""
    lists = [
        row
        for row in run_attribution(connection, "attribution_lists", first_day, last_day, window_ms)
        if row["experiment"] is not None
        and row["variant"] is not None
        and (experiment is None or row["experiment"] == experiment)
    ]
    by_position = run_attribution(connection, "attribution_by_position", first_day, last_day, window_ms)
    by_reason = run_attribution(connection, "attribution_by_reason", first_day, last_day, window_ms)
    by_variant = run_attribution(connection, "attribution_by_variant", first_day, last_day, window_ms)
    quality = list_metrics(connection, first_day, last_day, categories)
    confidence = 1 - alpha

    experiments: dict[str, dict[str, Any]] = {}
    for row in lists:
        arms = experiments.setdefault(row["experiment"], {"arms": {}})["arms"]
        arm = arms.setdefault(
            row["variant"],
            {"impressions": 0, "users": set(), "clicked": 0, "converted": 0, "degraded": 0, "latency": []},
        )
        arm["impressions"] += 1
        arm["users"].add(row["user_id"])
        arm["clicked"] += int((row["clicks"] or 0) > 0)
        arm["converted"] += int(row["converted"] or 0)
        arm["degraded"] += int(bool(row["degraded"]))
        if row["latency_ms"] is not None:
            arm["latency"].append(float(row["latency_ms"]))

    for name, experiment_data in experiments.items():
        arms = experiment_data["arms"]
        names = sorted(arms, key=lambda v: _variant_order(v, control))
        comparisons = max(1, len(names) - 1)
        level = alpha / comparisons
        for variant in names:
            arm = arms[variant]
            n = arm["impressions"]
            p95 = _percentile(arm["latency"], 0.95)
            arm.update(
                users=len(arm["users"]),
                ctr=arm["clicked"] / n,
                ctr_ci=wilson_interval(arm["clicked"], n, confidence),
                conversion=arm["converted"] / n,
                conversion_ci=wilson_interval(arm["converted"], n, confidence),
                degraded_share=arm["degraded"] / n,
                latency_p50_ms=_percentile(arm["latency"], 0.5),
                latency_p95_ms=p95,
                **quality.get((name, variant), {}),
            )
            arm["guardrails"] = [
                flag
                for flag, crossed in (
                    (f"degraded share {arm['degraded_share']:.3f} > {max_degraded_share:g}",
                     arm["degraded_share"] > max_degraded_share),
                    (f"p95 latency {p95:.1f} ms > {max_latency_p95_ms:g} ms",
                     p95 is not None and p95 > max_latency_p95_ms),
                )
                if crossed
            ]  # fmt: skip
            del arm["latency"]
        tests = {}
        for variant in names[1:]:
            a, b = arms[names[0]], arms[variant]
            ctr = two_proportion_z_test(a["clicked"], a["impressions"], b["clicked"], b["impressions"])
            conversion = two_proportion_z_test(
                a["converted"], a["impressions"], b["converted"], b["impressions"]
            )
            tests[variant] = {
                "against": names[0],
                "ctr": {**ctr.__dict__, "significant": ctr.p_value < level},
                "conversion": {**conversion.__dict__, "significant": conversion.p_value < level},
            }
        for arm in arms.values():
            arm["users"] = arm["users"] if isinstance(arm["users"], int) else len(arm["users"])
        if resplits:
            experiment_data["resplit_aa"] = resplit_check(
                [r for r in lists if r["experiment"] == name], name, resplits, alpha
            )
        experiment_data.update(
            control=names[0],
            variants=names,
            level=level,
            tests=tests,
            by_variant_and_model=[r for r in by_variant if r["experiment"] == name],
            by_position=[r for r in by_position if r["experiment"] == name],
            by_reason=[r for r in by_reason if r["experiment"] == name],
        )
    return {
        "window": {"first_day": first_day, "last_day": last_day, "attribution_ms": window_ms},
        "alpha": alpha,
        "test": "two-sided two-proportion z-test (pooled), each variant against the control; "
        "Bonferroni over the comparisons",
        "guardrails": {"max_degraded_share": max_degraded_share, "max_latency_p95_ms": max_latency_p95_ms},
        "experiments": experiments,
    }


def resplit_check(lists: list[dict[str, Any]], name: str, splits: int, alpha: float) -> dict[str, Any]:
    """How often the CTR test calls two random halves of the same answers different (A/A re-splits)."""
    from rtrec.experiments import BUCKETS, bucket

    significant = 0
    for n in range(splits):
        halves = [[0, 0], [0, 0]]
        for row in lists:
            half = halves[bucket(f"{name}-resplit-{n}", row["user_id"]) < BUCKETS // 2]
            half[0] += 1
            half[1] += int((row["clicks"] or 0) > 0)
        (n_a, clicked_a), (n_b, clicked_b) = halves
        significant += two_proportion_z_test(clicked_a, n_a, clicked_b, n_b).p_value < alpha
    return {"splits": splits, "significant": significant, "share": significant / splits if splits else 0.0}


def _variant_order(variant: str, control: str | None) -> tuple[int, str]:
    """The control first (``--control``, else a variant named control, model, a1 or a), then by name."""
    preferred = (control,) if control else ("control", "model", "a1", "a")
    return (preferred.index(variant) if variant in preferred else len(preferred), variant)


# ---------- output ----------
def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def markdown(report: dict[str, Any]) -> str:
    alpha = report["alpha"]
    lines = [
        "# Experiment report",
        "",
        f"Window {report['window']['first_day']} .. {report['window']['last_day']}, attribution within "
        f"{report['window']['attribution_ms'] / 60000:g} min; {report['test']}, alpha = {alpha:g} "
        f"({100 * (1 - alpha):g} % Wilson intervals). Guardrails: degraded share > "
        f"{report['guardrails']['max_degraded_share']:g}, p95 latency > "
        f"{report['guardrails']['max_latency_p95_ms']:g} ms.",
        "",
        "| experiment | variant | answers | CTR | CI | conversion | CI | p (CTR) | p (conversion) | "
        "significant (CTR) | coverage | novelty | diversity | degraded | p95 ms | guardrails |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in report["experiments"].items():
        for variant in data["variants"]:
            arm = data["arms"][variant]
            test = data["tests"].get(variant)
            p = f"{test['ctr']['p_value']:.2g}" if test else "(control)"
            p_conversion = f"{test['conversion']['p_value']:.2g}" if test else ""
            significant = ("yes" if test["ctr"]["significant"] else "no") if test else ""
            p95 = arm.get("latency_p95_ms")
            lines.append(
                f"| {name} | {variant} | {arm['impressions']} | {_pct(arm['ctr'])} | "
                f"{_pct(arm['ctr_ci'][0])}–{_pct(arm['ctr_ci'][1])} | {_pct(arm['conversion'])} | "
                f"{_pct(arm['conversion_ci'][0])}–{_pct(arm['conversion_ci'][1])} | {p} | {p_conversion} | "
                f"{significant} | "
                f"{arm.get('coverage', float('nan')):.3f} | {arm.get('novelty', float('nan')):.2f} | "
                f"{arm.get('diversity', float('nan')):.3f} | {arm['degraded_share']:.3f} | "
                f"{'' if p95 is None else f'{p95:.1f}'} | {'; '.join(arm['guardrails']) or 'ok'} |"
            )
    resplit = [
        f"- {name}: {d['resplit_aa']['significant']} of {d['resplit_aa']['splits']} A/A re-splits of its "
        f"answers significant at {alpha:g} ({_pct(d['resplit_aa']['share'])}; about {_pct(alpha)} expected)"
        for name, d in report["experiments"].items()
        if "resplit_aa" in d
    ]
    if resplit:
        lines += ["", *resplit]
    for name, data in report["experiments"].items():
        lines += ["", f"## {name}: click-through by position and by reason", ""]
        lines += ["| variant | position | shown | clicks | CTR |", "|---|---|---|---|---|"]
        for row in data["by_position"]:
            lines.append(
                f"| {row['variant']} | {row['position']} | {row['shown']} | {row['clicks']} | "
                f"{_pct(row['ctr'])} |"
            )
        lines += [
            "",
            "| variant | reason | shown | clicks | CTR | conversions |",
            "|---|---|---|---|---|---|",
        ]
        for row in data["by_reason"]:
            lines.append(
                f"| {row['variant']} | {row['reason']} | {row['shown']} | {row['clicks']} | "
                f"{_pct(row['ctr'])} | {row['conversions']} |"
            )
        lines += ["", "| variant | model version | answers | CTR@1 | CTR@5 | CTR@10 | conversion |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for row in data["by_variant_and_model"]:
            lines.append(
                f"| {row['variant']} | {row['model_version']} | {row['impressions']} | "
                f"{_pct(row['ctr_at_1'])} | "
                f"{_pct(row['ctr_at_5'])} | {_pct(row['ctr_at_10'])} | {_pct(row['conversion_rate'])} |"
            )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    """Click-through and conversion per experiment and variant, with the intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ctr, ctr_err, conversion, conversion_err = [], [], [], [], []
    for name, data in report["experiments"].items():
        for variant in data["variants"]:
            arm = data["arms"][variant]
            labels.append(f"{name}\n{variant}")
            ctr.append(arm["ctr"])
            ctr_err.append([arm["ctr"] - arm["ctr_ci"][0], arm["ctr_ci"][1] - arm["ctr"]])
            conversion.append(arm["conversion"])
            conversion_err.append(
                [arm["conversion"] - arm["conversion_ci"][0], arm["conversion_ci"][1] - arm["conversion"]]
            )
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(labels)), 4))
    positions = list(range(len(labels)))
    width = 0.38
    axis.bar([x - width / 2 for x in positions], ctr, width, yerr=list(zip(*ctr_err, strict=True)) or None,
             capsize=4, label="click-through")  # fmt: skip
    axis.bar([x + width / 2 for x in positions], conversion, width,
             yerr=list(zip(*conversion_err, strict=True)) or None, capsize=4, label="conversion")  # fmt: skip
    axis.set_xticks(positions, labels, fontsize=8)
    axis.set_ylabel("share of answers")
    axis.set_title(f"Experiments: {100 * (1 - report['alpha']):g} % Wilson intervals")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def catalog_categories(model_dir: Path) -> dict[str, frozenset[str]]:
    """Item id -> categories of the model's catalog (coverage's denominator, diversity's categories)."""
    from rtrec.features import Catalog

    catalog = Catalog.load(model_dir)
    names = catalog.categories
    return {
        item_id: frozenset(names[c] for c in ids)
        for item_id, ids in zip(catalog.item_ids, catalog.category_ids, strict=True)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.experiment_report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", type=Path, help="the archive's root (events/kind=.../dt=.../*.jsonl.gz)")
    parser.add_argument("--experiment", help="report this experiment only (default: every one)")
    parser.add_argument("--control", help="the variant the others are tested against (default: see above)")
    parser.add_argument("--resplits", type=int, default=200, help="A/A re-splits per experiment (0 = none)")
    parser.add_argument("--from", dest="first_day", default="0001-01-01", help="first day, yyyy-MM-dd")
    parser.add_argument("--to", dest="last_day", default="9999-12-31", help="last day, yyyy-MM-dd")
    parser.add_argument("--window-minutes", type=float, default=30, help="attribution window after an answer")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (two-sided)")
    parser.add_argument("--max-degraded-share", type=float, default=0.05)
    parser.add_argument("--max-latency-p95-ms", type=float, default=250.0)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "layers" / "model" / "model")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="writes <out>.md, <out>.json, <out>.png"
    )
    args = parser.parse_args(argv)

    connection = connect(args.archive)
    try:
        report = build_report(
            connection,
            first_day=args.first_day,
            last_day=args.last_day,
            window_ms=int(args.window_minutes * 60_000),
            alpha=args.alpha,
            max_degraded_share=args.max_degraded_share,
            max_latency_p95_ms=args.max_latency_p95_ms,
            categories=catalog_categories(args.model_dir),
            experiment=args.experiment,
            control=args.control,
            resplits=args.resplits,
        )
    finally:
        connection.close()
    if not report["experiments"]:
        print(f"no experiment impressions under {args.archive}", file=sys.stderr)
        return 1
    text = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    chart(report, args.out.with_suffix(".png"))
    print(text)
    print(f"wrote {args.out.with_suffix('.md')}, .json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
