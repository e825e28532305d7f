"""`make evaluate`: offline evaluation on the leave-one-out test split -> report.json, report.md, report.png.

python -m model_build.evaluate [--data movielens|ecommerce|DIR] [--model-dir DIR] [--report-dir DIR]

MovieLens (the default) writes report.{json,md,png}; another dataset writes report-<name>.{json,md,png}
and a dated section of report.md with its table (replaced on the next run; a MovieLens run keeps it).
Full ranking over all items with already-seen items excluded; HR@10, NDCG@10, MRR@10 for
most popular, item-to-item co-occurrence from the last item, the float Keras model and the quantized
TFLite model through rtrec.scorer.Scorer (the class the Lambda uses), plus the retrieval path the API
serves and the interest head's top-1 genre accuracy.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_build import train as train_module
from model_build.data import Examples, new_item_positions
from model_build.metrics import summary, top_k, top_k_agreement
from model_build.report_sections import put_section

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


@dataclass(frozen=True)
class CoOccurrence:
    """Sparse counts (CSR by the preceding item): how often j followed i within `window` new items."""

    indptr: np.ndarray  # int64 [N + 2]
    following: np.ndarray  # int64, the j of each count
    counts: np.ndarray  # float64

    def rows(self, items: np.ndarray, num_items: int) -> np.ndarray:
        """Dense rows [len(items), N + 1] for these preceding items."""
        out = np.zeros((len(items), num_items + 1), dtype=np.float64)
        for row, item in enumerate(np.asarray(items).tolist()):
            start, stop = self.indptr[item], self.indptr[item + 1]
            out[row, self.following[start:stop]] = self.counts[start:stop]
        return out


def co_occurrence_matrix(splits, catalog, window: int = CO_OCCURRENCE_WINDOW) -> CoOccurrence:
    """counts[i, j]: how often j followed i within `window` steps of a training sequence of new items.

    Repeats (a click after the view of the same item) are left out of the sequence: the baseline, like
    the model, predicts the next new item. Without repeats (MovieLens) the sequence is the train part.
    """
    size = len(catalog) + 1
    keys: list[int] = []
    for split in splits:
        sequence = [catalog.index_of(split.train[p].item_id) for p in new_item_positions(split.train)]
        for t, item in enumerate(sequence):
            keys.extend(item * size + following for following in sequence[t + 1 : t + 1 + window])
    unique, counts = np.unique(np.asarray(keys, dtype=np.int64), return_counts=True)
    preceding = unique // size
    return CoOccurrence(
        indptr=np.searchsorted(preceding, np.arange(size + 1)),
        following=unique % size,
        counts=counts.astype(np.float64),
    )


def co_occurrence_scores(counts: CoOccurrence, catalog, examples) -> np.ndarray:
    """Scores from the last history item's row; popularity breaks ties."""
    tie_break = np.concatenate([[0.0], catalog.popularity / (catalog.popularity.max() + 1.0)])
    last = examples.items[:, -1]
    return counts.rows(last, len(catalog)) + tie_break[None, :]


def take(examples: Examples, start: int, stop: int) -> Examples:
    """Rows start:stop of `examples`."""
    return Examples(
        items=examples.items[start:stop],
        signals=examples.signals[start:stop],
        targets=examples.targets[start:stop],
        interest_targets=examples.interest_targets[start:stop],
        seen=examples.seen[start:stop],
        futures=examples.futures[start:stop],
    )


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


def _bar_chart(rows: dict[str, dict], path: Path, title: str, targets: dict | None) -> None:
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
    if targets:
        ax.axhline(targets["HR@10"], color="C0", linestyle=":", linewidth=1, label="target HR@10")
        ax.axhline(targets["NDCG@10"], color="C1", linestyle=":", linewidth=1, label="target NDCG@10")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _methods_table(report: dict) -> list[str]:
    lines = ["| method | HR@10 | NDCG@10 | MRR@10 |", "|---|---|---|---|"]
    for name, metrics in report["methods"].items():
        lines.append(
            f"| {name} | {metrics['HR@10']:.4f} | {metrics['NDCG@10']:.4f} | {metrics['MRR@10']:.4f} |"
        )
    for name, metrics in report.get("peer_reference", {}).items():
        lines.append(f"| {name} (peer reference) | {metrics['HR@10']:.3f} | {metrics['NDCG@10']:.3f} | – |")
    return lines


def _validation_lines(training: dict) -> list[str]:
    history = training.get("validation_history") or []
    if not history:
        return []
    return [
        "Validation after each epoch (HR@10 / NDCG@10): "
        + ", ".join(f"{h['HR@10']:.4f} / {h['NDCG@10']:.4f}" for h in history)
        + "."
    ]


def _markdown(report: dict) -> str:
    lines = [f"# {report['title']}", "", f"{report['protocol']}", "", *_methods_table(report)]
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
    if report.get("training"):
        training = report["training"]
        lines += ["", f"Training: {training.get('epochs')} epochs in {training.get('seconds', '?')} s."]
        lines += _validation_lines(training)
    if report.get("note"):
        lines += ["", report["note"]]
    lines.append("")
    if report.get("targets"):
        lines.append(f"Targets: {report['targets']}")
    lines += [f"Model version {report['model_version']}", ""]
    blend = report.get("cooccurrence") or {}
    if blend.get("serving"):
        valid = blend["validation"]
        lines += [
            f"Co-occurrence blend (chosen on validation, {blend.get('chosen_on', '')}): followers within "
            f"{blend['window']} steps, the latest {blend['serving']['recent']} items voting "
            f"(decay {blend['serving']['recent_decay']}), weight {blend['serving']['weight']}; validation "
            f"HR@10 / NDCG@10 {valid['model']['HR@10']:.4f} / {valid['model']['NDCG@10']:.4f} (model) → "
            f"{valid['blend']['HR@10']:.4f} / {valid['blend']['NDCG@10']:.4f}. The API path row includes it; "
            "the Scorer and Keras rows are the model alone. As served (rules too): the as-served section.",
            "",
        ]
    return "\n".join(lines)


# Sections that other datasets' evaluations keep in the main report.md (a MovieLens evaluation, which
# rewrites report.md, carries them over).
SECTION_BEGIN = "<!-- section {name}: written by `python -m model_build.evaluate --data {name}` -->"
SECTION_END = "<!-- end of section {name} -->"
SECTION_PATTERN = re.compile(r"<!-- section (\S+): .*?<!-- end of section \1 -->\n?", re.DOTALL)
SECTION_TITLES = {"ecommerce": "Second dataset: generated e-commerce"}


def dataset_section(report: dict, name: str, detail_file: str) -> str:
    """The summary of another dataset's evaluation kept in report.md: dated, with the methods table."""
    lines = [
        SECTION_BEGIN.format(name=name),
        f"## {SECTION_TITLES.get(name, f'Dataset: {name}')} ({report['date']})",
        "",
        f"{report['protocol']}",
        "",
        *_methods_table(report),
        "",
    ]
    training = report.get("training") or {}
    data = report.get("data") or {}
    if data:
        lines.append(
            f"Data: {data.get('interactions')} interactions, {data.get('items')} items, "
            f"{data.get('categories')} categories (fingerprint {str(report.get('data_sha256'))[:12]})."
        )
    if training:
        lines.append(
            f"Model: {training.get('epochs')} epochs, trained in {training.get('seconds', '?')} s; "
            f"{report['quantization']['mode']} artifact {report['model_version']}."
        )
        lines += _validation_lines(training)
    if report.get("note"):
        lines += ["", report["note"], ""]
    lines += [f"Details: `{detail_file}`.", SECTION_END.format(name=name), ""]
    return "\n".join(lines)


def keep_sections(old_markdown: str) -> list[str]:
    """The other datasets' sections of an existing report.md."""
    return [match.group(0).rstrip("\n") + "\n" for match in SECTION_PATTERN.finditer(old_markdown)]


def evaluate(prepared: dict, scorer, keras_model, chunk: int = 256) -> dict:
    """Ranks of every method on the test split, computed `chunk` users at a time (a 20,000-item
    catalogue makes whole [users, items] score matrices large), plus the quantization agreement."""
    catalog, test = prepared["catalog"], prepared["test"]
    co_occurrence = co_occurrence_matrix(prepared["splits"], catalog)
    ranks: dict[str, list[np.ndarray]] = {}
    agreement: list[float] = []
    for start in range(0, len(test.targets), chunk):
        part = take(test, start, min(start + chunk, len(test.targets)))
        scores = {
            "most popular": popularity_scores(catalog, part),
            "co-occurrence (last item)": co_occurrence_scores(co_occurrence, catalog, part),
            "Keras float": train_module.keras_full_scores(keras_model, part, len(catalog)),
            "TFLite quantized (Scorer)": train_module.scorer_full_scores(scorer, part),
        }
        for name, values in scores.items():
            ranks.setdefault(name, []).append(train_module.ranks_of(values, part))
        float_scores, quant_scores = scores["Keras float"], scores["TFLite quantized (Scorer)"]
        agreement += [
            top_k_agreement(
                top_k(float_scores[i], K, part.seen[i]), top_k(quant_scores[i], K, part.seen[i]), K
            )
            for i in range(len(part.targets))
        ]
        print(f"  evaluated {start + len(part.targets)} / {len(test.targets)} users", flush=True)
    methods = {name: summary(np.concatenate(parts), K) for name, parts in ranks.items()}
    blend = " + co-occurrence blend" if getattr(scorer, "blend", None) is not None else ""
    methods[f"TFLite retrieve top-{RETRIEVAL_TOP_M} + rank{blend} (API path)"] = summary(
        retrieval_ranks(scorer, test), K
    )
    return {"methods": methods, "top10_agreement": float(np.mean(agreement))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data",
        default=train_module.DEFAULT_DATA,
        help="movielens, ecommerce or a directory (the data the model was trained on)",
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="default: train's --out default")
    parser.add_argument("--report-dir", type=Path, default=HERE)
    parser.add_argument("--weights", type=Path, default=None, help="Keras weights (default per dataset)")
    parser.add_argument("--note", default="", help="a paragraph for the report (how the model was chosen)")
    args = parser.parse_args(argv)
    started = time.time()
    default_data = train_module.is_default_data(args.data)
    name = train_module.data_slug(args.data)
    model_dir = args.model_dir or train_module.default_out(args.data)
    weights = args.weights or train_module.weights_path(args.data)
    stem = "report" if default_data else f"report-{name}"
    report_json, report_md, report_png = (args.report_dir / f"{stem}.{ext}" for ext in ("json", "md", "png"))

    if not weights.exists():
        raise SystemExit(f"{weights} is missing: run `python -m model_build.train --data {args.data}` first")
    prepared = train_module.prepare(args.data)
    catalog, test, dataset = prepared["catalog"], prepared["test"], prepared["dataset"]

    from rtrec.scorer import Scorer

    scorer = Scorer.load(model_dir)
    stamp = weights.with_suffix(".version")
    if stamp.exists() and stamp.read_text().strip() != scorer.version:
        print(
            f"warning: Keras weights ({stamp.read_text().strip()}) are not the artifact's ({scorer.version})"
        )

    from model_build.model import ModelConfig, build_serving_model

    config = scorer.metadata.get("training", {}).get("config")
    layers = train_module.build_layers(catalog, ModelConfig(**config) if config else None)
    keras_model = build_serving_model(layers)
    keras_model.load_weights(weights)

    evaluated = evaluate(prepared, scorer, keras_model)
    methods = evaluated["methods"]
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

    title = f"Offline evaluation ({dataset.name}, leave-one-out)"
    if default_data:
        title = "Offline evaluation (MovieLens-100k, leave-one-out)"
    training = scorer.metadata.get("training", {})
    report = {
        "title": title,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "data_spec": args.data,
        "protocol": (
            f"{len(test.targets)} users; per user the last interaction with an item not seen before = test "
            "(stable time sort), history = all earlier interactions (last 50 fed to the model); full "
            f"ranking over all {len(catalog)} items with already-seen items excluded; ties count against "
            "the target."
        ),
        "model_version": scorer.version,
        "methods": methods,
        "peer_reference": PEER_REFERENCE if default_data else {},
        "targets": {**TARGETS, "NDCG@10 vs most popular": ">= 2x"} if default_data else {},
        "quantization": {
            "mode": scorer.metadata.get("quantization"),
            "top10_agreement": evaluated["top10_agreement"],
            "ndcg_relative_change": float((quant_ndcg - float_ndcg) / max(float_ndcg, 1e-12)),
            "measured_at_build": scorer.metadata.get("quantization_measured", {}),
        },
        "interests": interests,
        "training": {
            key: training.get(key)
            for key in ("epochs", "seconds", "learning_rate", "validation_history")
            if key in training
        },
        "note": args.note,
        "data": {k: v for k, v in dataset.summary().items() if k not in ("name", "fingerprint")}
        | {"categories": len(catalog.categories)},
        "data_sha256": prepared["data_sha256"],
        "time_cutoff_ms": prepared["time_cutoff_ms"],
        "cooccurrence": scorer.metadata.get("cooccurrence"),
    }
    report_json.write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    main_md = args.report_dir / "report.md"
    if default_data:
        # Keep the other datasets' sections of the report.md being replaced.
        kept = keep_sections(main_md.read_text()) if main_md.exists() else []
        report_md.write_text("\n".join([markdown, *kept]))
    else:
        report_md.write_text(markdown)
        section = dataset_section(report, name, report_md.name)
        main_md.write_text(put_section(main_md.read_text() if main_md.exists() else "", name, section))
    chart_rows = {**methods, **report["peer_reference"]}
    _bar_chart(
        chart_rows,
        report_png,
        f"{dataset.name}: leave-one-out test, full ranking, seen items excluded",
        TARGETS if default_data else None,
    )
    print(markdown)
    print(f"wrote {report_json.name}, {report_md.name}, {report_png.name} in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
