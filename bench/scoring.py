"""Scoring latency: the shipped TFLite model (through rtrec.scorer.Scorer) vs Keras, one user, one thread.

Prints a table and writes bench/results/scoring.json. Each TFLite runtime is timed in its own
subprocess (cold import + load measured there too); Keras runs in this process. The "shipped" rows are
layers/model/model (labelled with its export mode); the "float32 untrained" and Keras rows use a model
of the same shape with untrained weights (timing does not depend on the values), so this runs in a
fresh clone without `make model`. `--compare DIR` times other artifacts the same way (for example the
same weights exported in another mode), interleaved with the shipped one. `retrieve_128_api` is the
API's call (shortlist 128, the history excluded) with the artifact's co-occurrence blend, and
`retrieve_128_model` the same call with the blend switched off.
Needs the dev venv (Python 3.11: TensorFlow, tflite-runtime).

    python bench/scoring.py [--calls 300] [--compare DIR ...] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python bench/scoring.py` from the repo root imports like the tests do (layers/core, then the repo).
for _path in (REPO_ROOT, REPO_ROOT / "layers" / "core"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
RESULTS = REPO_ROOT / "bench" / "results" / "scoring.json"
SIZES = (100, 500, None)  # None = the whole catalogue
RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import importlib
module = importlib.import_module(sys.argv[2])
t2 = time.perf_counter()
from rtrec.scorer import Scorer
scorer = Scorer.load(sys.argv[1], interpreter_module=module, num_threads=1)
t3 = time.perf_counter()
calls, sizes = int(sys.argv[3]), json.loads(sys.argv[4])
from rtrec.features import HistoryStep, encode_history
steps = [HistoryStep(scorer.catalog.item_at(i), "rating", 4) for i in range(1, 400, 9)]
items, signals = encode_history(steps, scorer.catalog)
rng = np.random.default_rng(0)
def timed(fn):
    for _ in range(20):
        fn()
    out = []
    for _ in range(calls):
        start = time.perf_counter(); fn(); out.append((time.perf_counter() - start) * 1e3)
    return out
result = {"import_numpy_ms": (t1 - t0) * 1e3, "import_runtime_ms": (t2 - t1) * 1e3,
          "load_ms": (t3 - t2) * 1e3}
for n in sizes:
    n = n or len(scorer.catalog)
    candidates = rng.choice(np.arange(1, len(scorer.catalog) + 1), size=n, replace=False)
    result[f"score_{n}"] = timed(lambda: scorer.score(items, signals, candidates))
result["retrieve_100"] = timed(lambda: scorer.retrieve(items, signals, 100))
result["retrieve_128_api"] = timed(lambda: scorer.retrieve(items, signals, 128, exclude=items))
blend, scorer.blend = scorer.blend, None
result["retrieve_128_model"] = timed(lambda: scorer.retrieve(items, signals, 128, exclude=items))
scorer.blend = blend
result["interests"] = timed(lambda: scorer.interests(items, signals))
result["catalog_size"] = len(scorer.catalog)
print(json.dumps(result))
"""


def run_child(model_dir: Path, module: str, calls: int) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "layers" / "core"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(model_dir), module, str(calls), json.dumps(list(SIZES))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{module} child failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def float_artifact() -> tuple[Path, object, object]:
    """A float32 TFLite model of the shipped model's shape (its config from metadata.json) and that Keras
    model, with freshly initialised weights: how long a call takes does not depend on the weight values,
    and this way a fresh clone needs neither `make model` nor its Keras weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(0)
    from model_build import train as train_module
    from model_build.export import convert, write_artifact
    from model_build.model import ModelConfig, build_serving_model
    from rtrec.features import Catalog

    catalog = Catalog.load(MODEL_DIR)
    metadata = json.loads((MODEL_DIR / "metadata.json").read_text())
    layers = train_module.build_layers(catalog, ModelConfig(**metadata["training"]["config"]))
    keras_model = build_serving_model(layers)
    out = Path(tempfile.mkdtemp(prefix="rtrec-float-"))
    metadata.update(
        version=metadata["version"] + "-float32-untrained", quantization="float32", weights="untrained"
    )
    write_artifact(
        out,
        convert(build_serving_model(layers, batch_size=1), "float32"),
        catalog,
        layers.item_embedding.get_weights()[0],
        metadata,
    )
    from rtrec.cooccurrence import COOCCURRENCE_FILE

    if (MODEL_DIR / COOCCURRENCE_FILE).exists():  # the shipped blend, so retrieve costs the same work
        (out / COOCCURRENCE_FILE).write_bytes((MODEL_DIR / COOCCURRENCE_FILE).read_bytes())
    return out, keras_model, catalog


def time_keras(keras_model, catalog, calls: int) -> dict:
    from rtrec.features import HistoryStep, encode_history

    steps = [HistoryStep(catalog.item_at(i), "rating", 4) for i in range(1, 400, 9)]
    items, signals = encode_history(steps, catalog)
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {}
    for n in SIZES:
        n = n or len(catalog)
        x = {
            "items": items[None, :],
            "signals": signals[None, :],
            "candidates": rng.choice(np.arange(1, len(catalog) + 1), size=n, replace=False)[None, :].astype(
                np.int32
            ),
        }
        for name, fn in (
            ("call", lambda x=x: keras_model(x, training=False)),
            ("predict", lambda x=x: keras_model.predict(x, verbose=0)),
        ):
            for _ in range(3):
                fn()
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - start) * 1e3)
            out.setdefault(name, {})[f"score_{n}"] = samples
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(samples, 50)), "p99_ms": float(np.percentile(samples, 99))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--keras-calls", type=int, default=40)
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="other artifacts to time")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the artifacts this many times")
    args = parser.parse_args(argv)

    rows: dict[str, dict] = {}
    startup: dict[str, dict] = {}
    float_dir, keras_model, catalog = float_artifact()
    n_all = len(catalog)
    shipped_mode = json.loads((MODEL_DIR / "metadata.json").read_text()).get("quantization", "?")
    artifacts = [(f"shipped {shipped_mode}", MODEL_DIR), ("float32 untrained", float_dir)]
    for other in args.compare:
        mode = json.loads((other / "metadata.json").read_text()).get("quantization", "?")
        artifacts.append((f"{mode} ({other.name})", other))
    samples: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every artifact alike
        for label, model_dir in artifacts:
            for module in RUNTIMES:
                raw = run_child(model_dir, module, args.calls)
                name = f"TFLite {label} ({module.split('.')[0]})"
                for key, value in raw.items():
                    if isinstance(value, list):
                        samples.setdefault(name, {}).setdefault(key, []).extend(value)
                startup[name] = {k: raw[k] for k in ("import_numpy_ms", "import_runtime_ms", "load_ms")}
    for name, timings in samples.items():
        rows[name] = {key: percentiles(v) for key, v in timings.items()}
    for name, timings in time_keras(keras_model, catalog, args.keras_calls).items():
        rows["Keras model(x)" if name == "call" else "Keras predict"] = {
            k: percentiles(v) for k, v in timings.items()
        }

    columns = [f"score_{n or n_all}" for n in SIZES] + [
        "retrieve_100",
        "retrieve_128_api",
        "retrieve_128_model",
        "interests",
    ]
    header = "| runtime (single thread) | " + " | ".join(f"{c} p50 / p99 ms" for c in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        cells = [f"{row[c]['p50_ms']:.3f} / {row[c]['p99_ms']:.3f}" if c in row else "–" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| runtime | import numpy ms | import interpreter ms | Scorer.load ms |",
        "|---|---|---|---|",
    ]
    for name, s in startup.items():
        lines.append(
            f"| {name} | {s['import_numpy_ms']:.1f} | {s['import_runtime_ms']:.1f} | {s['load_ms']:.1f} |"
        )
    shipped = rows[f"TFLite shipped {shipped_mode} (ai_edge_litert)"][f"score_{n_all}"]["p50_ms"]
    keras_call = rows["Keras model(x)"][f"score_{n_all}"]["p50_ms"]
    verdict = {
        "whole_catalog_p50_ms": shipped,
        "speedup_vs_keras_call": keras_call / shipped,
        "target_p50_le_1ms": shipped <= 1.0,
        "target_speedup_ge_20x": keras_call / shipped >= 20,
    }
    lines += [
        "",
        f"whole catalogue ({n_all}) p50 {shipped:.3f} ms (target ≤ 1 ms), "
        f"{verdict['speedup_vs_keras_call']:.0f}× faster than Keras model(x) (target ≥ 20×)",
    ]
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "load": os.getloadavg(),
                },
                "catalog_size": n_all,
                "calls": args.calls,
                "rows": rows,
                "startup": startup,
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
