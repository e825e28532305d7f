"""`make evaluate`: offline evaluation on the leave-one-out test split -> report.json, report.md, report.png.

Full ranking over all items with already-seen items excluded; HR@10, NDCG@10, MRR@10 for
most popular, item-to-item co-occurrence from the last item, the float Keras model and the quantized
TFLite model through rtrec.scorer.Scorer (the class the Lambda uses), plus the retrieval path the API
serves and the interest head's top-1 genre accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from model_build import train as train_module
from model_build.metrics import summary, top_k, top_k_agreement

HERE = Path(__file__).resolve().parent
REPORT_JSON = HERE / "report.json"
REPORT_MD = HERE / "report.md"
REPORT_PNG = HERE / "report.png"
K = 10
RETRIEVAL_TOP_M = 100
CO_OCCURRENCE_WINDOW = 3
# Measured under the same protocol with RecBole 1.2.1 (quoted in the issue; not re-run here).
PEER_REFERENCE = {
    "SASRec (RecBole)": {"HR@10": 0.206, "NDCG@10": 0.104},
    "GRU4Rec (RecBole)": {"HR@10": 0.182, "NDCG@10": 0.095},
    "NARM (RecBole)": {"HR@10": 0.180, "NDCG@10": 0.090},
    "BPR (RecBole)": {"HR@10": 0.124, "NDCG@10": 0.067},
    "ItemKNN (RecBole)": {"HR@10": 0.115, "NDCG@10": 0.063},
}
TARGETS = {"HR@10": 0.225, "NDCG@10": 0.115}


def popularity_scores(catalog, examples) -> np.ndarray:
    scores = np.concatenate([[-np.inf], catalog.popularity.astype(np.float64)])
    return np.tile(scores, (len(examples.targets), 1))


def co_occurrence_matrix(splits, catalog, window: int = CO_OCCURRENCE_WINDOW) -> np.ndarray:
    """counts[i, j]: how often j followed i within `window` steps in a training sequence."""
    counts = np.zeros((len(catalog) + 1, len(catalog) + 1), dtype=np.float32)
    for split in splits:
        sequence = [catalog.index_of(step.item_id) for step in split.train]
        for t, item in enumerate(sequence):
            for following in sequence[t + 1 : t + 1 + window]:
                counts[item, following] += 1
    return counts


def co_occurrence_scores(counts: np.ndarray, catalog, examples) -> np.ndarray:
    """Scores from the last history item's row; popularity breaks ties."""
    tie_break = np.concatenate([[0.0], catalog.popularity / (catalog.popularity.max() + 1.0)])
    last = examples.items[:, -1]
    return counts[last].astype(np.float64) + tie_break[None, :]


def retrieval_ranks(scorer, examples, top_m: int = RETRIEVAL_TOP_M) -> np.ndarray:
    """Rank of the target in what the API serves (retrieve with seen excluded); a miss counts as top_m."""
    ranks = []
    for i in range(len(examples.targets)):
        indices, _ = scorer.retrieve(examples.items[i], examples.signals[i], top_m, exclude=examples.seen[i])
        hits = np.flatnonzero(indices == examples.targets[i])
        ranks.append(int(hits[0]) if hits.size else top_m)
    return np.asarray(ranks)


def interest_accuracy(predicted: np.ndarray, catalog, examples) -> float:
    """Share of users whose top predicted genre is one of the next item's genres."""
    genre_matrix = catalog.category_matrix()
    top = predicted.argmax(axis=1)
    return float(np.mean(genre_matrix[examples.targets, top] > 0))


def history_genre_distribution(catalog, examples) -> np.ndarray:
    """Baseline interests: the genre mix of the user's own history."""
    genre_matrix = catalog.category_matrix()
    return genre_matrix[examples.items].sum(axis=1)


def _bar_chart(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for offset, metric in ((-0.2, "HR@10"), (0.2, "NDCG@10")):
        values = [rows[n][metric] for n in names]
        bars = ax.bar(x + offset, values, width=0.4, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.axhline(TARGETS["HR@10"], color="C0", linestyle=":", linewidth=1, label="target HR@10")
    ax.axhline(TARGETS["NDCG@10"], color="C1", linestyle=":", linewidth=1, label="target NDCG@10")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_title("MovieLens-100k leave-one-out test, full ranking, seen items excluded")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(report: dict) -> str:
    lines = [
        "# Offline evaluation (MovieLens-100k, leave-one-out)",
        "",
        f"{report['protocol']}",
        "",
        "| method | HR@10 | NDCG@10 | MRR@10 |",
        "|---|---|---|---|",
    ]
    for name, metrics in report["methods"].items():
        lines.append(
            f"| {name} | {metrics['HR@10']:.4f} | {metrics['NDCG@10']:.4f} | {metrics['MRR@10']:.4f} |"
        )
    for name, metrics in PEER_REFERENCE.items():
        lines.append(f"| {name} (peer reference) | {metrics['HR@10']:.3f} | {metrics['NDCG@10']:.3f} | – |")
    q = report["quantization"]
    lines += [
        "",
        f"Quantization ({q['mode']}): top-10 agreement with float {q['top10_agreement']:.3f}, "
        f"NDCG@10 change {100 * q['ndcg_relative_change']:+.2f}% (targets ≥ 0.95 and within ±2%).",
        "",
        "| quantization mode (measured at build) | top-10 agreement | NDCG@10 change | size KiB |",
        "|---|---|---|---|",
    ]
    for mode, m in q["measured_at_build"].items():
        if "top10_agreement" in m:
            lines.append(
                f"| {mode} | {m['top10_agreement']:.3f} | {100 * m['ndcg_relative_change']:+.2f}% "
                f"| {m.get('model_bytes', 0) / 1024:.0f} |"
            )
        else:
            lines.append(f"| {mode} | – | – | – ({m.get('note', '')}) |")
    lines += [
        "",
        "| interest head | top-1 genre accuracy (next item) |",
        "|---|---|",
    ]
    for name, value in report["interests"].items():
        lines.append(f"| {name} | {value:.4f} |")
    lines += ["", f"Targets: {report['targets']}", f"Model version {report['model_version']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=train_module.DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.time()

    if not train_module.WEIGHTS_PATH.exists():
        raise SystemExit(f"{train_module.WEIGHTS_PATH} is missing: run `make model` first")
    prepared = train_module.prepare()
    catalog, test = prepared["catalog"], prepared["test"]

    from rtrec.scorer import Scorer

    scorer = Scorer.load(args.model_dir)
    stamp = train_module.WEIGHTS_PATH.with_suffix(".version")
    if stamp.exists() and stamp.read_text().strip() != scorer.version:
        print(
            f"warning: Keras weights ({stamp.read_text().strip()}) are not the artifact's ({scorer.version})"
        )

    from model_build.model import build_serving_model

    layers = train_module.build_layers(catalog)
    keras_model = build_serving_model(layers)
    keras_model.load_weights(train_module.WEIGHTS_PATH)

    scores = {
        "most popular": popularity_scores(catalog, test),
        "co-occurrence (last item)": co_occurrence_scores(
            co_occurrence_matrix(prepared["splits"], catalog), catalog, test
        ),
        "Keras float": train_module.keras_full_scores(keras_model, test, len(catalog)),
        "TFLite quantized (Scorer)": train_module.scorer_full_scores(scorer, test),
    }
    methods = {name: summary(train_module.ranks_of(s, test), K) for name, s in scores.items()}
    methods[f"TFLite retrieve top-{RETRIEVAL_TOP_M} + rank (API path)"] = summary(
        retrieval_ranks(scorer, test), K
    )

    float_scores, quant_scores = scores["Keras float"], scores["TFLite quantized (Scorer)"]
    agreement = np.mean(
        [
            top_k_agreement(
                top_k(float_scores[i], K, test.seen[i]), top_k(quant_scores[i], K, test.seen[i]), K
            )
            for i in range(len(test.targets))
        ]
    )
    float_ndcg, quant_ndcg = (
        methods["Keras float"]["NDCG@10"],
        methods["TFLite quantized (Scorer)"]["NDCG@10"],
    )

    keras_interests = np.concatenate(
        [
            keras_model(
                {
                    "items": test.items[s : s + 256],
                    "signals": test.signals[s : s + 256],
                    "candidates": np.ones((len(test.items[s : s + 256]), 1), dtype=np.int32),
                }
            )["interests"].numpy()
            for s in range(0, len(test.targets), 256)
        ]
    )
    tflite_interests = np.stack(
        [scorer.interests(test.items[i], test.signals[i]) for i in range(len(test.targets))]
    )
    interests = {
        "history genre mix (baseline)": interest_accuracy(
            history_genre_distribution(catalog, test), catalog, test
        ),
        "interest head, Keras float": interest_accuracy(keras_interests, catalog, test),
        "interest head, TFLite (Scorer)": interest_accuracy(tflite_interests, catalog, test),
    }

    report = {
        "protocol": (
            f"{len(test.targets)} users; last interaction per user = test (stable time sort), "
            "history = all earlier interactions (last 50 fed to the model); full ranking over all "
            f"{len(catalog)} items with already-seen items excluded; ties count against the target."
        ),
        "model_version": scorer.version,
        "methods": methods,
        "peer_reference": PEER_REFERENCE,
        "targets": {**TARGETS, "NDCG@10 vs most popular": ">= 2x"},
        "quantization": {
            "mode": scorer.metadata.get("quantization"),
            "top10_agreement": float(agreement),
            "ndcg_relative_change": float((quant_ndcg - float_ndcg) / max(float_ndcg, 1e-12)),
            "measured_at_build": scorer.metadata.get("quantization_measured", {}),
        },
        "interests": interests,
        "data_sha256": prepared["data_sha256"],
        "time_cutoff_ms": prepared["time_cutoff_ms"],
    }
    REPORT_JSON.write_text(json.dumps(report, indent=2) + "\n")
    REPORT_MD.write_text(_markdown(report))
    _bar_chart({**methods, **PEER_REFERENCE}, REPORT_PNG)
    print(_markdown(report))
    print(f"wrote {REPORT_JSON.name}, {REPORT_MD.name}, {REPORT_PNG.name} in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
