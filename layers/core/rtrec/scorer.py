"""Runs the exported TFLite model: user interests, candidate scores and retrieval + ranking.

Depends on numpy and a TFLite interpreter module only (ai_edge_litert on Lambda, tflite_runtime in
containers / on the edge); the same code runs on both.

Why it looks the way it does:
- The model has a fixed-size candidate input per interpreter (a shortlist size and the catalogue size),
  resized once at load, so every call has the same shapes (flat latency, XNNPACK-friendly). Callers pass
  any number of candidates; padding with index 0 and chunking happen here and padded slots are dropped.
- The fused TFLite LSTM keeps its state in variable tensors between invoke() calls, so every invoke is
  followed by reset_all_variables().
- Output tensor order is not the signature order, so outputs are mapped by signature name.
- `retrieve()` runs the model once (the user vector, on an interpreter resized to one candidate) and the
  scoring head on the shortlist in numpy, with the head's weights read from the same model file: the
  head is a few small matmuls, and a second invoke would run the 50-step LSTM again for nothing. At load
  the numpy head is checked against the model's own `scores` on a probe; if the graph's head tensors are
  not found or disagree, retrieve falls back to the model call (numbers: bench/peer.py, docs/ARCHITECTURE.md
  "Peer, levers and 1M items").
- When the artifact ships item neighbours (``cooccurrence.npz``, see rtrec.cooccurrence), `retrieve()`
  takes the followers of the user's latest items in as candidates besides the dot-product shortlist and
  ranks everything by the model's score plus the recorded weight times their vote; the model build chose
  that weight on the validation split. `score()` stays the model alone (the /rank route and the report's
  "model" rows).
- The default XNNPACK delegate is left out: on this graph (dynamic-range weights, shape ops, fused LSTM) it
  adds a fixed cost to every invoke on LiteRT that its faster kernels do not win back, at the shortlist
  size or at the whole catalogue, and top-10 rankings agree with the delegated run (numbers:
  bench/scoring.py and docs/ARCHITECTURE.md, "Scorer" and "Latency").
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.cooccurrence import COOCCURRENCE_FILE, BlendSettings, ItemNeighbours
from rtrec.features import (
    INPUT_CANDIDATES,
    INPUT_ITEMS,
    INPUT_SIGNALS,
    OUTPUT_INTERESTS,
    OUTPUT_SCORES,
    OUTPUT_USER_VECTOR,
    PAD_INDEX,
    SEQUENCE_LENGTH,
    Catalog,
)
from rtrec.item_index import ITEM_INDEX_FILE, ItemIndex

if TYPE_CHECKING:
    from numpy.typing import NDArray

_INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class ModelUnavailable(RuntimeError):
    """The model artifact cannot be loaded, or a model call failed."""


def _interpreter_module(choice: str | ModuleType | None) -> ModuleType:
    if isinstance(choice, ModuleType):
        return choice
    names = (choice,) if choice else _INTERPRETER_MODULES
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as error:
            errors.append(f"{name}: {error}")
    raise ModelUnavailable("no TFLite interpreter module importable (" + "; ".join(errors) + ")")


class _FixedShapeRunner:
    """One interpreter with its candidate input resized once to `num_candidates`."""

    def __init__(
        self, module: ModuleType, model_content: bytes, num_candidates: int, num_threads: int
    ) -> None:
        interpreter = module.Interpreter(
            model_content=model_content,
            num_threads=num_threads,
            experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        runner = interpreter.get_signature_runner()
        self.inputs = {name: detail["index"] for name, detail in runner.get_input_details().items()}
        self.outputs = {name: detail["index"] for name, detail in runner.get_output_details().items()}
        del runner  # a live signature runner blocks resize_tensor_input
        missing = {INPUT_ITEMS, INPUT_SIGNALS, INPUT_CANDIDATES} - self.inputs.keys()
        missing |= {OUTPUT_SCORES, OUTPUT_INTERESTS, OUTPUT_USER_VECTOR} - self.outputs.keys()
        if missing:
            raise ModelUnavailable(f"model signature lacks {sorted(missing)}")
        interpreter.resize_tensor_input(self.inputs[INPUT_ITEMS], [1, SEQUENCE_LENGTH], strict=False)
        interpreter.resize_tensor_input(self.inputs[INPUT_SIGNALS], [1, SEQUENCE_LENGTH], strict=False)
        interpreter.resize_tensor_input(self.inputs[INPUT_CANDIDATES], [1, num_candidates], strict=False)
        interpreter.allocate_tensors()
        interpreter.reset_all_variables()
        self.interpreter = interpreter
        self.num_candidates = num_candidates

    def run(
        self, items: NDArray[Any], signals: NDArray[Any], candidates: NDArray[Any]
    ) -> dict[str, NDArray[Any]]:
        interpreter = self.interpreter
        try:
            interpreter.set_tensor(self.inputs[INPUT_ITEMS], items.reshape(1, SEQUENCE_LENGTH))
            interpreter.set_tensor(self.inputs[INPUT_SIGNALS], signals.reshape(1, SEQUENCE_LENGTH))
            interpreter.set_tensor(self.inputs[INPUT_CANDIDATES], candidates.reshape(1, self.num_candidates))
            interpreter.invoke()
            return {name: interpreter.get_tensor(index)[0] for name, index in self.outputs.items()}
        except Exception as error:
            raise ModelUnavailable(f"model call failed: {error}") from error
        finally:
            interpreter.reset_all_variables()  # the fused LSTM would otherwise carry state into the next call


_HEAD_TENSORS = {  # name suffix in the converted graph -> role (model_build/model.py ScoringHead)
    "item_embedding/embedding_lookup": "embedding",
    "scores/head_user/Tensordot/MatMul": "w_user",
    "scores/head_user/BiasAdd/ReadVariableOp": "b_user",
    "scores/head_item/Tensordot/MatMul": "w_item",
    "scores/head_product/Tensordot/MatMul": "w_product",
    "scores/head_out/Tensordot/MatMul": "w_out",
    "scores/head_out/BiasAdd/ReadVariableOp": "b_out",
}
_HEAD_TOLERANCE = 0.005  # max |numpy head − model scores| on the load-time probe (measured ≤ 0.002)


def _dequantized(interpreter: Any, detail: dict[str, Any]) -> NDArray[np.float32]:
    value = interpreter.get_tensor(detail["index"])
    out: NDArray[np.float32] = value.astype(np.float32)
    if detail["dtype"] == np.float32:
        return out
    scale, zero = detail["quantization"]
    if not scale:
        raise ValueError(f"{detail['name']}: per-channel or unquantized {detail['dtype']}")
    out = (out - np.float32(zero)) * np.float32(scale)
    return out


class _Dense:
    """One bias-free Dense layer as TFLite runs it: float, or dynamic-range (int8 weights, per-tensor scale;
    the input quantized asymmetrically per row on the fly, int32 accumulation), so results match the model's
    own kernel to float rounding rather than to int8 rounding."""

    def __init__(self, interpreter: Any, detail: dict[str, Any]) -> None:
        value = interpreter.get_tensor(detail["index"])
        self.hybrid = detail["dtype"] == np.int8
        if self.hybrid:
            scale, zero = detail["quantization"]
            if not scale or zero:
                raise ValueError(f"{detail['name']}: not symmetric per-tensor int8")
            # int8 × int8 sums over `in` terms stay below 2^24 for in ≤ 1,040: exact in float32 BLAS
            if value.shape[1] > 1040:
                raise ValueError(f"{detail['name']}: too wide for exact float32 accumulation")
            self.weights_t = value.astype(np.float32).T.copy()  # [in, out], integer-valued
            self.row_sums = value.astype(np.float32).sum(axis=1)  # [out]
            self.scale = np.float32(scale)
        else:
            self.weights = value.astype(np.float32).T.copy()
        self.shape = tuple(int(v) for v in value.shape)  # [out, in]

    def __call__(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        if not self.hybrid:
            out: NDArray[np.float32] = x @ self.weights
            return out
        if len(x) == 1:
            return self._one_row(x)
        f = np.float32
        low = np.minimum(x.min(axis=1, keepdims=True), f(0))
        high = np.maximum(x.max(axis=1, keepdims=True), f(0))
        scale = (high - low) / f(255)
        safe = np.where(scale > 0, scale, f(1)).astype(f)
        low_q, high_q = low / safe, high / safe
        zero = np.where(f(128) - low_q < f(127) + high_q, f(-128) - low_q, f(127) - high_q)
        np.rint(zero, out=zero)
        np.clip(zero, -128, 127, out=zero)
        # q = round(zero + x / scale): in range by construction; rint rounds halves to even where TFLite
        # rounds them away from zero, which only differs on exact ties
        q = x * (f(1) / safe)
        q += zero
        np.rint(q, out=q)
        acc = q @ self.weights_t
        acc -= zero * self.row_sums
        acc *= scale * self.scale  # scale 0 (an all-zero row) gives 0
        result: NDArray[np.float32] = acc
        return result

    def _one_row(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The same for one row, with the per-row numbers as Python floats (a third of the numpy calls)."""
        f = np.float32
        low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = f((f(high) - f(low)) / f(255))
        if not scale:
            return np.zeros((1, len(self.row_sums)), dtype=np.float32)
        low_q, high_q = f(low) / scale, f(high) / scale
        zero = f(-128) - low_q if f(128) - low_q < f(127) + high_q else f(127) - high_q
        zero = f(min(max(round(float(zero)), -128), 127))
        q = x * (f(1) / scale)
        q += zero
        np.rint(q, out=q)
        acc = q @ self.weights_t
        acc -= zero * self.row_sums
        acc *= scale * self.scale
        result: NDArray[np.float32] = acc
        return result


class _NumpyHead:
    """The scoring head in numpy: dot(u, e) + w_out · relu(W_user u + b_user + W_item e + W_product (u ⊙ e))
    + b_out, the weights read from the model file."""

    def __init__(self, interpreter: Any, details: dict[str, dict[str, Any]]) -> None:
        self.embedding = _dequantized(interpreter, details["embedding"])
        self.user = _Dense(interpreter, details["w_user"])
        self.product = _Dense(interpreter, details["w_product"])
        item = _Dense(interpreter, details["w_item"])
        self.out = _dequantized(interpreter, details["w_out"]).reshape(-1)
        self.b_user = _dequantized(interpreter, details["b_user"]).reshape(-1)
        self.b_out = _dequantized(interpreter, details["b_out"]).reshape(-1)[0]
        hidden, dim = self.user.shape
        if (
            self.embedding.ndim != 2
            or self.embedding.shape[1] != dim
            or self.product.shape != (hidden, dim)
            or item.shape != (hidden, dim)
            or self.out.shape != (hidden,)
            or self.b_user.shape != (hidden,)
        ):
            raise ValueError("unexpected head shapes")
        self.item_part = item(self.embedding)  # per item row, independent of the user: once, at load
        self._item = item
        self.extra_embedding = np.zeros((0, dim), dtype=np.float32)  # rows N+1.. (see Scorer.set_extra_items)
        self.extra_item_part = np.zeros((0, hidden), dtype=np.float32)

    def set_extra(self, vectors: NDArray[np.float32]) -> None:
        """Embedding rows for the indices after the model's: their user-independent part once, here."""
        self.extra_embedding = vectors
        hidden = len(self.out)
        self.extra_item_part = self._item(vectors) if len(vectors) else np.zeros((0, hidden), np.float32)

    @classmethod
    def from_interpreter(cls, interpreter: Any, rows: int) -> _NumpyHead | None:
        """The head from the graph's constant tensors, or None if this graph has another head."""
        details: dict[str, dict[str, Any]] = {}
        try:
            for detail in interpreter.get_tensor_details():
                for suffix, role in _HEAD_TENSORS.items():
                    if not str(detail["name"]).endswith(suffix) or role in details:
                        continue
                    if role != "embedding" or (len(detail["shape"]) == 2 and int(detail["shape"][0]) == rows):
                        details[role] = detail
            if details.keys() != set(_HEAD_TENSORS.values()):
                return None
            return cls(interpreter, details)
        except Exception:
            return None

    def __call__(self, user: NDArray[np.float32], candidates: NDArray[Any]) -> NDArray[np.float32]:
        model_rows = len(self.embedding)
        if len(self.extra_embedding) and (candidates >= model_rows).any():
            extra = candidates >= model_rows
            items = np.empty((len(candidates), self.embedding.shape[1]), dtype=np.float32)
            item_part = np.empty((len(candidates), len(self.out)), dtype=np.float32)
            items[~extra] = self.embedding[candidates[~extra]]
            item_part[~extra] = self.item_part[candidates[~extra]]
            items[extra] = self.extra_embedding[candidates[extra] - model_rows]
            item_part[extra] = self.extra_item_part[candidates[extra] - model_rows]
        else:
            items, item_part = self.embedding[candidates], self.item_part[candidates]
        product = items * user
        hidden = item_part + self.product(product) + (self.user(user[None, :])[0] + self.b_user)
        np.maximum(hidden, np.float32(0), out=hidden)
        scores: NDArray[np.float32] = (product.sum(axis=1) + hidden @ self.out + self.b_out).astype(
            np.float32
        )
        return scores


class Scorer:
    """The serving model. Create once per process (it is not thread-safe) and reuse."""

    def __init__(
        self,
        metadata: dict[str, Any],
        catalog: Catalog,
        item_matrix: NDArray[Any],
        shortlist: _FixedShapeRunner,
        full: _FixedShapeRunner,
        encoder: _FixedShapeRunner | None = None,
        head: _NumpyHead | None = None,
    ) -> None:
        self.metadata = metadata
        self.version: str = str(metadata["version"])
        self.catalog = catalog
        self._item_matrix = item_matrix  # float32 [N + 1, D], dequantized from int8 at load
        self._index: ItemIndex | None = None  # approximate retrieval, for catalogues that ship one
        self._shortlist = shortlist
        self._full = full
        self._encoder = encoder or shortlist  # user vector and interests: one candidate, the cheapest shape
        self._head = head  # None: retrieve scores its shortlist with the model (a second invoke)
        # Vectors of items the model never saw (indices N+1..N+E): see set_extra_items.
        self._extra = np.zeros((0, item_matrix.shape[1]), dtype=np.float32)
        self._neighbours: ItemNeighbours | None = None  # followers per item, blended into retrieve
        self.blend: BlendSettings | None = None

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        interpreter_module: str | ModuleType | None = None,
        num_threads: int = 1,
    ) -> Scorer:
        """Load model.tflite, items.json, metadata.json and item_embeddings.npz from `model_dir`.

        interpreter_module: None = ai_edge_litert.interpreter if importable, else tflite_runtime.interpreter.
        """
        model_dir = Path(model_dir)
        module = _interpreter_module(interpreter_module)
        try:
            metadata = json.loads((model_dir / "metadata.json").read_text())
            catalog = Catalog.load(model_dir / "items.json")
            with np.load(model_dir / "item_embeddings.npz") as arrays:
                item_matrix = arrays["int8"].astype(np.float32) * arrays["scale"].astype(np.float32)[:, None]
            if item_matrix.shape[0] != len(catalog) + 1:
                raise ModelUnavailable("item_embeddings.npz does not match items.json")
            content = (model_dir / "model.tflite").read_bytes()
            shortlist_size = int(metadata.get("shortlist_size", 128))
            shortlist = _FixedShapeRunner(module, content, shortlist_size, num_threads)
            full = _FixedShapeRunner(module, content, len(catalog), num_threads)
            encoder = _FixedShapeRunner(module, content, 1, num_threads)
            head = _NumpyHead.from_interpreter(shortlist.interpreter, len(catalog) + 1)
        except ModelUnavailable:
            raise
        except Exception as error:
            raise ModelUnavailable(f"cannot load model from {model_dir}: {error}") from error
        scorer = cls(metadata, catalog, item_matrix, shortlist, full, encoder)
        scorer._head = head if head is not None and scorer._head_matches_model(head) else None
        scorer._load_blend(model_dir)
        index_path = model_dir / ITEM_INDEX_FILE
        if index_path.exists():
            # Large catalogues ship an approximate index built with the model: retrieval probes it instead
            # of scoring every item. Without the file (small catalogues) retrieval stays exact.
            try:
                scorer._index = ItemIndex.load(index_path)
            except Exception as error:
                raise ModelUnavailable(f"cannot load {index_path}: {error}") from error
            if len(scorer._index) != len(catalog):
                raise ModelUnavailable(f"{ITEM_INDEX_FILE} does not match items.json")
        return scorer

    def _load_blend(self, model_dir: Path) -> None:
        """The co-occurrence blend metadata.json names, with its neighbours (which must be there)."""
        try:
            blend = BlendSettings.from_metadata(self.metadata)
            if blend is None:
                return
            neighbours = ItemNeighbours.load(model_dir / COOCCURRENCE_FILE)
        except Exception as error:
            raise ModelUnavailable(f"cannot load the co-occurrence blend: {error}") from error
        if len(neighbours) != len(self.catalog):
            raise ModelUnavailable(f"{COOCCURRENCE_FILE} does not match items.json")
        self._neighbours, self.blend = neighbours, blend

    def _head_matches_model(self, head: _NumpyHead) -> bool:
        """The numpy head against the model's own scores on a fixed probe history and candidates."""
        count = len(self.catalog)
        items = (np.arange(SEQUENCE_LENGTH, dtype=np.int32) * 7919) % count + 1
        signals = np.full(SEQUENCE_LENGTH, 1, dtype=np.int32)
        candidates = (np.arange(self._shortlist.num_candidates, dtype=np.int32) * 104729) % count + 1
        out = self._shortlist.run(items, signals, candidates)
        mine = head(out[OUTPUT_USER_VECTOR].astype(np.float32), candidates)
        gap = np.abs(mine - out[OUTPUT_SCORES].astype(np.float32))
        return bool(np.isfinite(mine).all() and gap.max() <= _HEAD_TOLERANCE)

    @property
    def shortlist_size(self) -> int:
        return self._shortlist.num_candidates

    @property
    def item_vectors(self) -> NDArray[np.float32]:
        """The retrieval embedding of every item, row = model index (row 0 is padding); read only."""
        view: NDArray[np.float32] = self._item_matrix.view()
        view.flags.writeable = False
        return view

    @property
    def extra_items(self) -> int:
        """How many indices past the model's catalog `retrieve` can return (see set_extra_items)."""
        return len(self._extra)

    def set_extra_items(self, vectors: NDArray[Any]) -> None:
        """Vectors for indices N+1..N+E: items added to the catalog after the model was trained.

        `retrieve` then scores them with the model's own items: by affinity in the shortlist and by the
        numpy scoring head, the vector standing in for the item's embedding row (the retrieval matrix and
        the head's embedding are the same trained table). With an approximate index they go to its delta
        list, scanned exactly by every query. Without the numpy head they are never returned: the model
        graph cannot score an index it does not have. Replaces the previous set; call it when they change.
        """
        extra = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self._item_matrix.shape[1])
        self._extra = extra
        if self._head is not None:
            self._head.set_extra(extra)
        if self._index is not None:
            self._index.clear_delta()
            if len(extra):
                self._index.add(np.arange(len(self.catalog) + 1, len(self.catalog) + 1 + len(extra)), extra)

    def _check_history(self, items: NDArray[Any], signals: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        items = np.asarray(items, dtype=np.int32).reshape(-1)
        signals = np.asarray(signals, dtype=np.int32).reshape(-1)
        if items.shape != (SEQUENCE_LENGTH,) or signals.shape != (SEQUENCE_LENGTH,):
            raise ValueError(
                f"items and signals must each hold {SEQUENCE_LENGTH} values (use encode_history)"
            )
        if items.min() < 0 or items.max() > len(self.catalog):
            raise ValueError("history item index out of range")
        return items, signals

    def _no_candidates(self) -> NDArray[Any]:
        return np.zeros(self._encoder.num_candidates, dtype=np.int32)

    def interests(self, items: NDArray[Any], signals: NDArray[Any]) -> NDArray[np.float32]:
        """Predicted interest distribution over the catalog's categories, float32[C], summing to 1."""
        items, signals = self._check_history(items, signals)
        out = self._encoder.run(items, signals, self._no_candidates())[OUTPUT_INTERESTS].astype(np.float32)
        out = np.clip(out, 0.0, None)
        total = float(out.sum())
        if out.shape != (len(self.catalog.categories),) or total <= 0:
            raise ModelUnavailable("interest output is malformed")
        return (out / total).astype(np.float32)

    def user_vector(self, items: NDArray[Any], signals: NDArray[Any]) -> NDArray[np.float32]:
        """The user representation used for retrieval, float32[D]."""
        items, signals = self._check_history(items, signals)
        return self._encoder.run(items, signals, self._no_candidates())[OUTPUT_USER_VECTOR].astype(np.float32)

    def score(
        self, items: NDArray[Any], signals: NDArray[Any], candidates: NDArray[Any]
    ) -> NDArray[np.float32]:
        """Ranking-head logits for catalog indices 1..N, float32[len(candidates)]; higher = better."""
        items, signals = self._check_history(items, signals)
        candidates = np.asarray(candidates).reshape(-1)
        if candidates.size == 0:
            raise ValueError("candidates must not be empty")
        if not np.issubdtype(candidates.dtype, np.integer):
            raise ValueError("candidates must be integer catalog indices")
        if candidates.min() < 1 or candidates.max() > len(self.catalog):
            raise ValueError(f"candidate indices must be in 1..{len(self.catalog)}")
        candidates = candidates.astype(np.int32)
        runner = self._shortlist if candidates.size <= self._shortlist.num_candidates else self._full
        width = runner.num_candidates
        scores = np.empty(candidates.size, dtype=np.float32)
        for start in range(0, candidates.size, width):
            chunk = candidates[start : start + width]
            padded = np.full(width, PAD_INDEX, dtype=np.int32)
            padded[: chunk.size] = chunk
            scores[start : start + chunk.size] = runner.run(items, signals, padded)[OUTPUT_SCORES][
                : chunk.size
            ]
        return scores

    def retrieve(
        self,
        items: NDArray[Any],
        signals: NDArray[Any],
        top_m: int,
        exclude: NDArray[Any] | None = None,
        new_items: int = 0,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Top-M by user-vector · item-matrix (numpy), re-ranked by the scoring head, best first.

        One model call (the user vector); the head runs in numpy on the M candidates when it matched the
        model at load (scores within 0.005 of `score()`'s; measured ≤ 0.002), else `score()` ranks them
        (a second call). Indices past the model's catalog are the extra items (`set_extra_items`), scored
        the same way; ``new_items`` > 0 adds the best that many of them by affinity to the shortlist even
        when they miss the top M (exploration's candidates). With a co-occurrence blend in the artifact,
        the followers of the user's latest items join the candidates and every score is the head's logit
        + weight × their vote; followers that miss the best top_m are dropped again.

        Never returns index 0 (padding) or an excluded index; may return fewer than top_m.
        """
        if top_m < 1:
            raise ValueError("top_m must be at least 1")
        user = self.user_vector(items, signals)
        size = len(self.catalog)
        extra = len(self._extra) if self._head is not None else 0
        excluded = np.zeros(0, dtype=np.int64)
        if exclude is not None and np.size(exclude):
            excluded = np.asarray(exclude, dtype=np.int64).reshape(-1)
            excluded = excluded[(excluded >= 0) & (excluded <= size + extra)]
        allowed: NDArray[np.bool_] | None = None
        if self._index is not None:
            shortlist, _ = self._index.search(user, int(top_m), exclude=excluded)
            shortlist = shortlist[(shortlist >= 1) & (shortlist <= size + extra)]
        else:
            affinity = self._item_matrix @ user
            affinity[PAD_INDEX] = -np.inf
            affinity[excluded[excluded <= size]] = -np.inf
            if extra:
                affinity = np.concatenate([affinity, self._extra @ user])
                affinity[excluded] = -np.inf
            allowed = np.isfinite(affinity)
            count = min(int(top_m), int(allowed.sum()))
            shortlist = np.argpartition(-affinity, count - 1)[:count] if count else np.zeros(0, np.int64)
        if extra and new_items > 0:
            shortlist = np.union1d(shortlist, self._best_extra(user, new_items, excluded))
        shortlist = shortlist.astype(np.int64)
        candidates, votes = self._with_followers(items, shortlist, allowed, excluded)
        if candidates.size == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._head is not None:
            scores = self._head(user, candidates)
        else:
            scores = self.score(items, signals, candidates)
        if votes is not None and self.blend is not None:
            scores = (scores + np.float32(self.blend.weight) * votes).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        if candidates.size > shortlist.size:
            # followers came in: the best top_m stay, and the new items (exploration's candidates) too
            keep = (np.arange(order.size) < int(top_m)) | (candidates[order] > size)
            order = order[keep]
        return candidates[order], scores[order]

    def _best_extra(self, user: NDArray[np.float32], count: int, excluded: NDArray[np.int64]) -> NDArray[Any]:
        """The ``count`` extra indices with the highest affinity, excluded ones left out."""
        affinity = self._extra @ user
        affinity[excluded[excluded > len(self.catalog)] - len(self.catalog) - 1] = -np.inf
        count = min(count, int(np.isfinite(affinity).sum()))
        if not count:
            return np.zeros(0, dtype=np.int64)
        best = np.argpartition(-affinity, count - 1)[:count]
        return best.astype(np.int64) + len(self.catalog) + 1

    def _with_followers(
        self,
        items: NDArray[Any],
        shortlist: NDArray[np.int64],
        allowed: NDArray[np.bool_] | None,
        excluded: NDArray[np.int64],
    ) -> tuple[NDArray[np.int64], NDArray[np.float32] | None]:
        """The shortlist plus the allowed followers of the latest items, and each candidate's vote."""
        if self._neighbours is None or self.blend is None:
            return shortlist, None
        followers, vote = self._neighbours.votes(items, self.blend.recent, self.blend.recent_decay)
        if followers.size:
            if allowed is not None:
                keep = allowed[followers]
            elif excluded.size:
                keep = ~np.isin(followers, excluded)
            else:
                keep = np.ones(followers.size, dtype=bool)
            followers, vote = followers[keep], vote[keep]
        votes = np.zeros(shortlist.size, dtype=np.float32)
        if not followers.size:
            return shortlist, votes
        # followers already in the shortlist give it their vote; the others join it (small sorted lookups:
        # cheaper per call than set operations on these few hundred indices)
        by_index = np.argsort(shortlist, kind="stable")
        ordered = shortlist[by_index]
        position = np.minimum(np.searchsorted(ordered, followers), max(0, ordered.size - 1))
        inside = ordered[position] == followers if ordered.size else np.zeros(followers.size, bool)
        votes[by_index[position[inside]]] = vote[inside]
        candidates = np.concatenate([shortlist, followers[~inside]])
        votes = np.concatenate([votes, vote[~inside]])
        return candidates, votes
