"""Converting a tiny model gives TFLite outputs that match Keras, on LiteRT and on tflite-runtime 2.14.

Each runtime runs in its own subprocess (TensorFlow, LiteRT and tflite_runtime each bundle a TFLite
build; one process per runtime keeps them apart), through the same rtrec.scorer.Scorer the Lambda uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataio.movielens import GENRES
from rtrec.features import SEQUENCE_LENGTH, Catalog

tf = pytest.importorskip("tensorflow")

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_ITEMS = 12

RUN_SCORER = """
import json, sys
import numpy as np
from rtrec.scorer import Scorer
model_dir, module, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
scorer = Scorer.load(model_dir, interpreter_module=module)
out = []
for case in cases:
    items, signals = np.array(case["items"], np.int32), np.array(case["signals"], np.int32)
    out.append({
        "scores": scorer.score(items, signals, np.arange(1, len(scorer.catalog) + 1)).tolist(),
        "subset": scorer.score(items, signals, np.array([3, 1, 7])).tolist(),
        "interests": scorer.interests(items, signals).tolist(),
    })
print(json.dumps(out))
"""


def _run(model_dir: Path, module: str, cases: list[dict]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'layers' / 'core'}{os.pathsep}{REPO_ROOT}"}
    result = subprocess.run(
        [sys.executable, "-c", RUN_SCORER, str(model_dir), module, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from model_build.export import convert, write_artifact
    from model_build.model import ModelConfig, ModelLayers, build_serving_model

    tf.keras.utils.set_random_seed(7)
    catalog = Catalog(
        item_ids=[str(100 + i) for i in range(NUM_ITEMS)],
        categories=GENRES,
        category_ids=[[i % 19] for i in range(NUM_ITEMS)],
        popularity=np.arange(NUM_ITEMS, dtype=np.float32),
    )
    config = ModelConfig(embedding_dim=8, signal_dim=2, genre_dim=3, encoder_units=8, head_units=4)
    layers = ModelLayers(NUM_ITEMS, catalog.category_matrix(), config)
    keras_model = build_serving_model(layers)
    export_model = build_serving_model(layers, batch_size=1)
    model_dir = tmp_path_factory.mktemp("tiny-model")
    write_artifact(
        model_dir,
        convert(export_model, "float32"),
        catalog,
        layers.item_embedding.get_weights()[0],
        {"version": "tiny", "shortlist_size": 4},
    )
    rng = np.random.default_rng(0)
    cases = []
    for length in (1, 7, SEQUENCE_LENGTH):
        items = np.zeros(SEQUENCE_LENGTH, np.int32)
        signals = np.zeros(SEQUENCE_LENGTH, np.int32)
        items[-length:] = rng.integers(1, NUM_ITEMS + 1, length)
        signals[-length:] = rng.integers(1, 6, length)
        cases.append({"items": items.tolist(), "signals": signals.tolist()})
    expected = []
    for case in cases:
        out = keras_model(
            {
                "items": np.array([case["items"]], np.int32),
                "signals": np.array([case["signals"]], np.int32),
                "candidates": np.arange(1, NUM_ITEMS + 1, dtype=np.int32)[None, :],
            }
        )
        expected.append({"scores": out["scores"].numpy()[0], "interests": out["interests"].numpy()[0]})
    return model_dir, cases, expected


@pytest.mark.parametrize("module", ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"])
def test_tiny_model_matches_keras(tiny_artifact, module):
    model_dir, cases, expected = tiny_artifact
    results = _run(model_dir, module, cases)
    for result, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(result["scores"], want["scores"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result["interests"], want["interests"], rtol=1e-4, atol=1e-6)
        # a 3-candidate call (padded to the shortlist of 4) gives the same scores as the full call
        np.testing.assert_allclose(result["subset"], want["scores"][[2, 0, 6]], rtol=1e-4, atol=1e-5)


def test_artifact_version_depends_on_content_only():
    from model_build.export import artifact_version

    catalog = Catalog(
        item_ids=["a", "b"], categories=GENRES, category_ids=[[0], [1]], popularity=np.ones(2, np.float32)
    )
    embeddings = np.arange(12, dtype=np.float32).reshape(3, 4)
    version = artifact_version(b"model", catalog, embeddings, "dynamic_range")
    assert version == artifact_version(b"model", catalog, embeddings.copy(), "dynamic_range")
    assert version.startswith("dynamic_range-")
    assert version != artifact_version(b"model!", catalog, embeddings, "dynamic_range")
    assert version != artifact_version(b"model", catalog, embeddings * 2 + 1, "dynamic_range")
