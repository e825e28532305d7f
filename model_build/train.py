"""`make model`: train on a dataset, quantize, measure the quantization, export the artifact.

python -m model_build.train [--data movielens|ecommerce|DIR] [--out DIR] [--epochs N]

The data comes through ``dataio.adapter_for(--data)`` (default ``movielens``). The artifact goes to
``--out``: by default ``layers/model/model`` (the shipped model) for MovieLens and ``.cache/models/<name>``
for any other dataset, so that training on another dataset never replaces the shipped model by accident.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from model_build import data as data_module
from model_build.export import artifact_version, convert, write_artifact
from model_build.metrics import summary, target_rank, top_k, top_k_agreement

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = data_module.DEFAULT_DATA
DEFAULT_OUT = REPO_ROOT / "layers" / "model" / "model"
OTHER_MODELS_DIR = REPO_ROOT / ".cache" / "models"
WEIGHTS_PATH = data_module.WORK_DIR / "keras_weights.h5"
SEED = 42
NUM_SAMPLED = 64  # candidates per example for the scoring head: the positive + uniform negatives
SHORTLIST_SIZE = 128
BATCH_SIZE = 256
# float32 since 2026-11-30: the same quality as dynamic-range within noise on validation and test, faster on
# the API's call with LiteRT (dynamic-range quantizes every activation row on the fly) and on tflite-runtime;
# 0.9 MB instead of 0.23 (docs/ARCHITECTURE.md, "Model", "Export mode").
ARTIFACT_MODE = "float32"
# Peak of the cosine schedule, chosen on validation NDCG@10 (8 epochs, best epoch kept; 2026-11-30):
# 2e-3 0.1385, 4e-3 0.1504, 6e-3 0.1516, 8e-3 0.1487. At 2e-3 validation was still rising at the last epoch.
LEARNING_RATE = 6e-3
# The retrieval loss's target: the next item and, with less weight, the two after it. Many users rate
# several movies in the same second, so "the next one" is partly file order; chosen on validation
# (NDCG@10 0.1306 with the next item alone, 0.1358 with these weights).
NEXT_ITEM_WEIGHTS = (1.0, 0.5, 0.25)
MEASURED_MODES = "float32,dynamic_range,int8"
FLOAT16_NOTE = "not measured: TF 2.15.1's converter blew up (memory, then segfault) on this graph in float16"


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def is_default_data(spec: str) -> bool:
    return spec.strip().lower() in ("movielens", "ml-100k", "movielens-100k")


def data_slug(spec: str) -> str:
    """A file-name-safe name for a data spec (a directory: its last component)."""
    name = Path(spec.strip().rstrip("/")).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.").lower() or "data"


def default_out(spec: str) -> Path:
    """layers/model/model for MovieLens (the shipped model), .cache/models/<name> otherwise."""
    return DEFAULT_OUT if is_default_data(spec) else OTHER_MODELS_DIR / data_slug(spec)


def weights_path(spec: str) -> Path:
    """Where the Keras weights of a build on `spec` are kept (evaluate reloads them)."""
    if is_default_data(spec):
        return WEIGHTS_PATH
    return data_module.WORK_DIR / data_slug(spec) / "keras_weights.h5"


def prepare(spec: str = DEFAULT_DATA):
    """Load the dataset `spec` names, split and encode everything the build and the evaluation need."""
    dataset = data_module.load_dataset(spec)
    splits = data_module.leave_one_out(dataset)
    catalog = data_module.build_catalog(dataset, splits)
    return {
        "dataset": dataset,
        "data_sha256": dataset.fingerprint,
        "splits": splits,
        "catalog": catalog,
        "train": data_module.training_examples(splits, catalog),
        "valid": data_module.validation_examples(splits, catalog),
        "test": data_module.test_examples(splits, catalog),
        "time_cutoff_ms": data_module.time_cutoff_ms(dataset),
    }


def build_layers(catalog, config=None):
    from model_build.model import ModelConfig, ModelLayers

    return ModelLayers(len(catalog), catalog.category_matrix(), config or ModelConfig())


def keras_full_scores(serving_model, examples, num_items: int, batch: int = 64) -> np.ndarray:
    """Scoring-head logits of every item for every example, [n, num_items + 1] (column 0 = padding)."""
    candidates = np.arange(1, num_items + 1, dtype=np.int32)
    out = np.empty((len(examples.targets), num_items + 1), dtype=np.float32)
    out[:, 0] = -np.inf
    for start in range(0, len(examples.targets), batch):
        stop = min(start + batch, len(examples.targets))
        result = serving_model(
            {
                "items": examples.items[start:stop],
                "signals": examples.signals[start:stop],
                "candidates": np.tile(candidates, (stop - start, 1)),
            },
            training=False,
        )
        out[start:stop, 1:] = result["scores"].numpy()
    return out


def ranks_of(full_scores: np.ndarray, examples) -> np.ndarray:
    return np.array(
        [
            target_rank(full_scores[i], int(examples.targets[i]), examples.seen[i])
            for i in range(len(examples.targets))
        ]
    )


def scorer_full_scores(scorer, examples) -> np.ndarray:
    num_items = len(scorer.catalog)
    candidates = np.arange(1, num_items + 1, dtype=np.int32)
    out = np.empty((len(examples.targets), num_items + 1), dtype=np.float32)
    out[:, 0] = -np.inf
    for i in range(len(examples.targets)):
        out[i, 1:] = scorer.score(examples.items[i], examples.signals[i], candidates)
    return out


def quantization_fidelity(float_scores: np.ndarray, quant_scores: np.ndarray, examples, k: int = 10) -> dict:
    """Average top-k agreement with the float model and NDCG@k of both, on the same users."""
    agreement = [
        top_k_agreement(
            top_k(float_scores[i], k, examples.seen[i]), top_k(quant_scores[i], k, examples.seen[i]), k
        )
        for i in range(len(examples.targets))
    ]
    float_metrics = summary(ranks_of(float_scores, examples), k)
    quant_metrics = summary(ranks_of(quant_scores, examples), k)
    ndcg_key = f"NDCG@{k}"
    relative = (quant_metrics[ndcg_key] - float_metrics[ndcg_key]) / max(float_metrics[ndcg_key], 1e-12)
    return {
        f"top{k}_agreement": float(np.mean(agreement)),
        "float": float_metrics,
        "quantized": quant_metrics,
        "ndcg_relative_change": float(relative),
    }


class ValidationCallback:
    """Evaluates full-ranking NDCG@10 on the validation split after each epoch; keeps the best weights."""

    def __new__(cls, *args, **kwargs):
        tf = _tf()

        class _Callback(tf.keras.callbacks.Callback):
            def __init__(self, serving_model, examples, num_items):
                super().__init__()
                self.serving_model = serving_model
                self.examples = examples
                self.num_items = num_items
                self.best = -1.0
                self.best_weights = None
                self.history: list[dict] = []

            def on_epoch_end(self, epoch, logs=None):
                scores = keras_full_scores(self.serving_model, self.examples, self.num_items)
                metrics = summary(ranks_of(scores, self.examples))
                self.history.append({"epoch": epoch + 1, **metrics})
                print(
                    f"  validation: HR@10 {metrics['HR@10']:.4f}  NDCG@10 {metrics['NDCG@10']:.4f}",
                    flush=True,
                )
                if metrics["NDCG@10"] > self.best:
                    self.best = metrics["NDCG@10"]
                    self.best_weights = self.model.get_weights()

        return _Callback(*args, **kwargs)


def seen_mask(seen_items, num_items: int):
    """[N + 1] float mask, 1 at every catalog index in `seen_items` (unique indices)."""
    import tensorflow as tf

    return tf.scatter_nd(seen_items[:, None], tf.ones_like(seen_items, dtype=tf.float32), [num_items + 1])


def next_items_target(futures, num_items: int):
    """[N + 1] distribution over the next items, weighted by NEXT_ITEM_WEIGHTS (0 = no item)."""
    import tensorflow as tf

    futures = futures[: len(NEXT_ITEM_WEIGHTS)]
    weights = tf.constant(NEXT_ITEM_WEIGHTS, tf.float32) * tf.cast(futures > 0, tf.float32)
    return tf.scatter_nd(futures[:, None], weights / tf.reduce_sum(weights), [num_items + 1])


def training_dataset(examples, num_items: int, seed: int = SEED):
    """Batched (features, labels) for the training model.

    features: items, signals, candidates (the next item first, then uniform negatives), seen mask.
    labels: retrieval = distribution over the next items, ranking = 0 (the first candidate), interests.
    """
    import tensorflow as tf

    def per_example(features, labels):
        negatives = tf.random.uniform((NUM_SAMPLED - 1,), 1, num_items + 1, dtype=tf.int32, seed=seed)
        futures = features.pop("futures")
        features["candidates"] = tf.concat([futures[:1], negatives], 0)
        features["seen"] = seen_mask(features.pop("seen_items"), num_items)
        labels["retrieval"] = next_items_target(futures, num_items)
        return features, labels

    seen_items = tf.RaggedTensor.from_row_lengths(
        np.concatenate(examples.seen).astype(np.int32), [len(s) for s in examples.seen]
    )
    return (
        tf.data.Dataset.from_tensor_slices(
            (
                {
                    "items": examples.items,
                    "signals": examples.signals,
                    "futures": examples.futures,
                    "seen_items": seen_items,
                },
                {
                    "ranking": np.zeros(len(examples.targets), dtype=np.int32),
                    "interests": examples.interest_targets,
                },
            )
        )
        .shuffle(len(examples.targets), seed=seed)
        .map(per_example)
        .batch(BATCH_SIZE)
        .prefetch(2)
    )


def train(prepared: dict, epochs: int, seed: int = SEED, config=None, learning_rate: float = LEARNING_RATE):
    """Train; returns (layers, serving model with dynamic candidate count, validation history)."""
    tf = _tf()
    from model_build.model import build_serving_model, build_training_model

    tf.keras.utils.set_random_seed(seed)
    catalog = prepared["catalog"]
    num_items = len(catalog)
    layers = build_layers(catalog, config)
    training_model = build_training_model(layers, NUM_SAMPLED)
    serving_model = build_serving_model(layers)
    examples = prepared["train"]
    dataset = training_dataset(examples, num_items, seed)
    steps_per_epoch = -(-len(examples.targets) // BATCH_SIZE)
    training_model.compile(
        # Cosine decay to zero over the run: the last epochs settle instead of bouncing between minima.
        optimizer=tf.keras.optimizers.Adam(
            tf.keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch)
        ),
        loss={
            "retrieval": tf.keras.losses.CategoricalCrossentropy(from_logits=True),
            "ranking": tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "interests": tf.keras.losses.CategoricalCrossentropy(),
        },
        loss_weights={"retrieval": 1.0, "ranking": 0.5, "interests": 0.2},
    )
    callback = ValidationCallback(serving_model, prepared["valid"], num_items)
    training_model.fit(dataset, epochs=epochs, callbacks=[callback], verbose=2)
    if callback.best_weights is not None:
        training_model.set_weights(callback.best_weights)
    return layers, serving_model, callback.history


def representative_data(examples, count: int = 200, seed: int = SEED):
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(examples.targets), size=min(count, len(examples.targets)), replace=False)

    def generate():
        for row in rows:
            candidates = rng.integers(
                1, int(examples.items.max()) + 1, size=(1, SHORTLIST_SIZE), dtype=np.int32
            )
            yield {
                "items": examples.items[row : row + 1],
                "signals": examples.signals[row : row + 1],
                "candidates": candidates,
            }

    return generate


def load_scorer(model_bytes: bytes, prepared: dict, item_embeddings: np.ndarray, interpreter_module=None):
    """Write a throwaway artifact and load it through the serving Scorer (the path the Lambda uses)."""
    from rtrec.scorer import Scorer

    tmp = Path(tempfile.mkdtemp(prefix="rtrec-model-"))
    write_artifact(
        tmp,
        model_bytes,
        prepared["catalog"],
        item_embeddings,
        {"version": "tmp", "shortlist_size": SHORTLIST_SIZE},
    )
    return Scorer.load(tmp, interpreter_module=interpreter_module)


def artifact_signature(catalog: Any, item_embeddings: Any) -> dict[str, Any]:
    """The serving graph's inputs and outputs as metadata.json states them (make model and retrain)."""
    return {
        "inputs": {
            "items": {"dtype": "int32", "shape": [1, 50], "meaning": "rtrec.features.encode_history items"},
            "signals": {
                "dtype": "int32",
                "shape": [1, 50],
                "meaning": "rtrec.features.encode_history signals",
            },
            "candidates": {"dtype": "int32", "shape": [1, -1], "meaning": "catalog indices, 0 = padding"},
        },
        "outputs": {
            "scores": {
                "dtype": "float32",
                "shape": [1, -1],
                "meaning": "logit per candidate, higher = better",
            },
            "interests": {
                "dtype": "float32",
                "shape": [1, len(catalog.categories)],
                "meaning": "softmax over the categories of items.json",
            },
            "user_vector": {
                "dtype": "float32",
                "shape": [1, item_embeddings.shape[1]],
                "meaning": "for retrieval",
            },
        },
        "item_embeddings": "item_embeddings.npz: int8 [N+1, D] with per-row float32 scale",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=DEFAULT_DATA, help="movielens, ecommerce or a directory")
    parser.add_argument("--epochs", type=int, default=int(os.environ.get("EPOCHS", "8")))
    parser.add_argument(
        "--out", type=Path, default=None, help="artifact directory (default: see the module doc)"
    )
    # float16 is left out by default (FLOAT16_NOTE).
    parser.add_argument("--modes", default=MEASURED_MODES, help="quantization modes to measure")
    parser.add_argument("--weights", type=Path, default=None, help="Keras weights (default per dataset)")
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--encoder-units", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--reuse-weights", action="store_true", help="skip training, load the last weights")
    parser.add_argument("--mode", default=ARTIFACT_MODE, help="quantization mode of the exported artifact")
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.data)
    args.weights = args.weights or weights_path(args.data)
    args.weights.parent.mkdir(parents=True, exist_ok=True)

    started = time.time()
    prepared = prepare(args.data)
    catalog, dataset = prepared["catalog"], prepared["dataset"]
    print(
        f"data {dataset.name}: {len(dataset.interactions)} interactions, {len(prepared['splits'])} users, "
        f"{len(catalog)} items, {len(catalog.categories)} categories, "
        f"{len(prepared['train'].targets)} training examples ({time.time() - started:.0f} s)",
        flush=True,
    )
    train_started = time.time()
    from model_build.model import ModelConfig

    if args.reuse_weights:
        from model_build.model import build_serving_model

        layers = build_layers(catalog)
        serving_model = build_serving_model(layers)
        serving_model.load_weights(args.weights)
        history = []
    else:
        overrides = {"dropout": args.dropout, "encoder_units": args.encoder_units}
        config = ModelConfig(**{k: v for k, v in overrides.items() if v is not None})
        layers, serving_model, history = train(
            prepared, args.epochs, config=config, learning_rate=args.learning_rate
        )
        serving_model.save_weights(args.weights)
    train_seconds = time.time() - train_started
    print(f"trained in {train_seconds:.0f} s", flush=True)
    from model_build.model import build_serving_model

    export_model = build_serving_model(layers, batch_size=1)
    item_embeddings = layers.item_embedding.get_weights()[0]

    test = prepared["test"]
    float_scores = keras_full_scores(serving_model, test, len(catalog))
    rep = representative_data(prepared["train"])
    quantization: dict[str, dict] = {}
    chosen_bytes = None
    for mode in [m for m in args.modes.split(",") if m]:
        model_bytes = convert(export_model, mode, rep)
        scorer = load_scorer(model_bytes, prepared, item_embeddings)
        fidelity = quantization_fidelity(float_scores, scorer_full_scores(scorer, test), test)
        fidelity["model_bytes"] = len(model_bytes)
        quantization[mode] = fidelity
        print(
            f"  {mode:14s} {len(model_bytes) / 1024:7.1f} KiB  "
            f"top-10 agreement {fidelity['top10_agreement']:.3f}  "
            f"NDCG@10 {fidelity['quantized']['NDCG@10']:.4f} (float {fidelity['float']['NDCG@10']:.4f}, "
            f"{100 * fidelity['ndcg_relative_change']:+.2f}%)",
            flush=True,
        )
        if mode == args.mode:
            chosen_bytes = model_bytes
    if "float16" not in quantization:
        quantization["float16"] = {"note": FLOAT16_NOTE}
    if chosen_bytes is None:
        chosen_bytes = convert(export_model, args.mode, rep)
    # The co-occurrence blend the API adds to this model's scores, chosen on validation (weight 0 = none).
    from model_build import cooccurrence

    neighbours, blend_entry = cooccurrence.attach(
        prepared, load_scorer(chosen_bytes, prepared, item_embeddings)
    )

    metadata = {
        "version": artifact_version(
            chosen_bytes, catalog, item_embeddings, args.mode, neighbours, blend_entry.get("serving")
        ),
        "quantization": args.mode,
        "shortlist_size": SHORTLIST_SIZE,
        **artifact_signature(catalog, item_embeddings),
        "data": {
            "source": dataset.name,
            "fingerprint": prepared["data_sha256"],
            "time_cutoff_ms": prepared["time_cutoff_ms"],
            "split": "leave-one-out per user over the user's new items in time order (stable sort)",
            "interactions": len(dataset.interactions),
            "users": len(prepared["splits"]),
            "items": len(catalog),
            "categories": len(catalog.categories),
        },
        "training": {
            "epochs": args.epochs,
            "seconds": round(train_seconds, 1),
            "learning_rate": args.learning_rate,
            "seed": SEED,
            "config": asdict(layers.config),
            "validation_history": history,
        },
        "metrics": {"test_float": summary(ranks_of(float_scores, test))},
        "quantization_measured": quantization,
        "cooccurrence": blend_entry,
    }
    if args.mode in quantization:
        metadata["metrics"]["test_quantized"] = quantization[args.mode]["quantized"]
    write_artifact(args.out, chosen_bytes, catalog, item_embeddings, metadata, neighbours)
    args.weights.with_suffix(".version").write_text(metadata["version"] + "\n")
    args.weights.with_name("quantization.json").write_text(json.dumps(quantization, indent=2))
    print(f"wrote {args.out} in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
