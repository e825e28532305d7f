"""TFLite conversion (returns bytes) and artifact writing (the thin part that touches files)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from rtrec.cooccurrence import COOCCURRENCE_FILE, ItemNeighbours
from rtrec.features import Catalog
from rtrec.item_index import INDEX_MIN_ITEMS, ITEM_INDEX_FILE, ItemIndex

QUANTIZATION_MODES = ("float32", "float16", "dynamic_range", "int8")


def convert(
    model: tf.keras.Model,
    mode: str,
    representative_data: Callable[[], Iterable[list[np.ndarray]]] | None = None,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    int8 quantizes weights and activations from representative data but keeps float inputs/outputs
    and float fallbacks for ops without int8 kernels; the score output stays a float logit.
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose from {QUANTIZATION_MODES}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if representative_data is None:
            raise ValueError("int8 quantization needs representative data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_data
    return converter.convert()


def quantize_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: matrix ≈ int8 * scale[:, None]."""
    matrix = np.asarray(matrix, dtype=np.float32)
    scale = np.abs(matrix).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    quantized = np.clip(np.round(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return quantized, scale


def artifact_version(
    model_bytes: bytes,
    catalog: Catalog,
    item_embeddings: np.ndarray,
    mode: str,
    neighbours: ItemNeighbours | None = None,
    blend: dict | None = None,
) -> str:
    """A version derived from the artifact's content: the same build gives the same version.

    A clock-based version would change metadata.json on every rebuild even when `make model`
    reproduces the model byte for byte. The co-occurrence blend (its neighbours and serving
    settings) is part of what the API serves, so it is part of the version; an artifact without
    one keeps the version it had before blends existed.
    """
    return _version(
        model_bytes, catalog.to_json(), quantize_rows(item_embeddings)[0], mode, neighbours, blend
    )


def _version(
    model_bytes: bytes,
    catalog_json: dict,
    quantized_embeddings: np.ndarray,
    mode: str,
    neighbours: ItemNeighbours | None,
    blend: dict | None,
) -> str:
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps(catalog_json, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(quantized_embeddings).tobytes())
    if neighbours is not None:
        digest.update(neighbours.content_bytes())
        digest.update(json.dumps(blend or {}, sort_keys=True).encode())
    return f"{mode}-{digest.hexdigest()[:12]}"


def write_artifact(
    out_dir: Path,
    model_bytes: bytes,
    catalog: Catalog,
    item_embeddings: np.ndarray,
    metadata: dict,
    neighbours: ItemNeighbours | None = None,
) -> None:
    """Write model.tflite, items.json, item_embeddings.npz, metadata.json and, with a blend,
    cooccurrence.npz into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(model_bytes)
    (out_dir / "items.json").write_text(json.dumps(catalog.to_json(), separators=(",", ":")))
    quantized, scale = quantize_rows(item_embeddings)
    with (out_dir / "item_embeddings.npz").open("wb") as handle:
        np.savez_compressed(handle, int8=quantized, scale=scale)
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    _write_neighbours(out_dir, neighbours)
    index_path = out_dir / ITEM_INDEX_FILE
    if len(catalog) >= INDEX_MIN_ITEMS:
        # Exact retrieval scores every item per request; past this size an IVF index built here (and
        # loaded by the Scorer at cold start) keeps it within a few milliseconds.
        rows = (quantized[1:].astype(np.float32) * scale[1:, None]).astype(np.float32)
        ItemIndex.build(rows, ids=np.arange(1, len(catalog) + 1)).save(index_path)
    elif index_path.exists():
        index_path.unlink()


def _write_neighbours(out_dir: Path, neighbours: ItemNeighbours | None) -> None:
    path = out_dir / COOCCURRENCE_FILE
    if neighbours is not None:
        neighbours.save(path)
    elif path.exists():
        path.unlink()  # a stale blend from an earlier build must not ride along


def rewrite_with_neighbours(model_dir: Path, neighbours: ItemNeighbours | None, entry: dict) -> str:
    """Put a (re)chosen blend into an existing artifact: cooccurrence.npz, metadata's ``cooccurrence``
    and the content version; returns the new version."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    with np.load(model_dir / "item_embeddings.npz") as arrays:
        quantized = arrays["int8"]
    catalog_json = json.loads((model_dir / "items.json").read_text())  # as written: what the build hashed
    mode = str(metadata.get("quantization", str(metadata["version"]).rsplit("-", 1)[0]))
    metadata["cooccurrence"] = entry
    metadata["version"] = _version(
        (model_dir / "model.tflite").read_bytes(),
        catalog_json,
        quantized,
        mode,
        neighbours,
        entry.get("serving") if neighbours is not None else None,
    )
    (model_dir / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    _write_neighbours(model_dir, neighbours)
    return str(metadata["version"])
