"""The evaluation's baselines and report sections, on the tiny fixtures (no training, no TensorFlow)."""

from __future__ import annotations

import numpy as np

from model_build import data as data_module
from model_build import evaluate


def _dense_co_occurrence(splits, catalog, window=evaluate.CO_OCCURRENCE_WINDOW) -> np.ndarray:
    """The dense matrix the evaluation used before (every train step; MovieLens has no repeats)."""
    counts = np.zeros((len(catalog) + 1, len(catalog) + 1), dtype=np.float32)
    for split in splits:
        sequence = [catalog.index_of(step.item_id) for step in split.train]
        for t, item in enumerate(sequence):
            for following in sequence[t + 1 : t + 1 + window]:
                counts[item, following] += 1
    return counts


def test_sparse_co_occurrence_equals_the_dense_matrix_without_repeats(tiny_dataset):
    splits = data_module.leave_one_out(tiny_dataset)
    catalog = data_module.build_catalog(tiny_dataset, splits)
    test = data_module.test_examples(splits, catalog)
    dense = _dense_co_occurrence(splits, catalog)
    assert dense.sum() > 0
    sparse = evaluate.co_occurrence_matrix(splits, catalog)
    every_item = np.arange(len(catalog) + 1)
    np.testing.assert_array_equal(sparse.rows(every_item, len(catalog)), dense.astype(np.float64))
    tie_break = np.concatenate([[0.0], catalog.popularity / (catalog.popularity.max() + 1.0)])
    expected = dense[test.items[:, -1]].astype(np.float64) + tie_break[None, :]
    np.testing.assert_array_equal(evaluate.co_occurrence_scores(sparse, catalog, test), expected)


def test_co_occurrence_skips_repeats(shop):
    dataset = shop
    splits = data_module.leave_one_out(dataset)
    catalog = data_module.build_catalog(dataset, splits)
    index = catalog.index_of
    rows = evaluate.co_occurrence_matrix(splits, catalog).rows(np.array([index("A")]), len(catalog))
    # train new items: A, B, C (the repeats of A and C are not steps of the sequence)
    assert np.flatnonzero(rows[0]).tolist() == [index("B"), index("C")]
    assert rows[0, index("A")] == 0


def test_take_slices_every_field(tiny_dataset):
    splits = data_module.leave_one_out(tiny_dataset)
    catalog = data_module.build_catalog(tiny_dataset, splits)
    train = data_module.training_examples(splits, catalog)
    part = evaluate.take(train, 1, 3)
    assert part.targets.tolist() == train.targets[1:3].tolist()
    assert len(part.seen) == 2 and part.seen[0] is train.seen[1]
    assert part.items.shape == (2, train.items.shape[1])


def _report(hr: float) -> dict:
    metrics = {"HR@10": hr, "NDCG@10": hr / 2, "MRR@10": hr / 3}
    return {
        "date": "2026-11-30",
        "protocol": "p",
        "methods": {"most popular": metrics, "Keras float": metrics},
        "quantization": {"mode": "dynamic_range"},
        "model_version": "v",
        "data_sha256": "f" * 64,
        "training": {"epochs": 3, "seconds": 100.0},
        "data": {"interactions": 10, "items": 5, "categories": 2},
    }


def test_dataset_sections_are_replaced_in_place_and_survive_a_rewrite():
    main = "# Offline evaluation (MovieLens-100k)\n\n| method |\n"
    first = evaluate.dataset_section(_report(0.1), "ecommerce", "report-ecommerce.md")
    assert "## Second dataset: generated e-commerce (2026-11-30)" in first
    once = evaluate.put_section(main, "ecommerce", first)
    assert once.startswith(main) and once.count("Second dataset") == 1
    second = evaluate.dataset_section(_report(0.2), "ecommerce", "report-ecommerce.md")
    twice = evaluate.put_section(once, "ecommerce", second)
    assert twice.count("Second dataset") == 1
    assert "| most popular | 0.2000" in twice and "| most popular | 0.1000" not in twice
    other = evaluate.put_section(twice, "shop", evaluate.dataset_section(_report(0.3), "shop", "x.md"))
    assert evaluate.keep_sections(other) == [second, evaluate.dataset_section(_report(0.3), "shop", "x.md")]
