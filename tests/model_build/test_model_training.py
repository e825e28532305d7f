"""What the training loop feeds the model: whole-history seen masks and next-items targets.

Runs on the tiny hand-written MovieLens fixture; no MovieLens data and no training.
"""

from __future__ import annotations

import numpy as np
import pytest

from model_build import data as data_module

tf = pytest.importorskip("tensorflow")


@pytest.fixture
def tiny_training(tiny):
    splits = data_module.leave_one_out(tiny)
    return splits, data_module.build_catalog(tiny, splits)


def test_seen_covers_the_whole_history_not_only_the_encoded_window(tiny_training):
    splits, catalog = tiny_training
    examples = data_module.training_examples(splits, catalog, length=1)
    index = catalog.index_of
    # user 1's train part is 12, 13, 14: its second row predicts 14 from a one-step window [13]
    first = sum(len(s.train) - 1 for s in splits[: [s.user_id for s in splits].index("1")])
    assert examples.items[first + 1].tolist() == [index("13")]
    assert sorted(examples.seen[first + 1].tolist()) == sorted([index("12"), index("13")])
    assert examples.futures[first].tolist() == [index("13"), index("14"), 0]
    assert examples.futures[first + 1].tolist() == [index("14"), 0, 0]
    assert examples.targets.tolist() == examples.futures[:, 0].tolist()


def test_training_batches_mask_seen_items_and_spread_the_target_over_the_next_items(tiny_training):
    from model_build.train import NEXT_ITEM_WEIGHTS, NUM_SAMPLED, training_dataset

    splits, catalog = tiny_training
    examples = data_module.training_examples(splits, catalog)
    num_items = len(catalog)
    features, labels = next(iter(training_dataset(examples, num_items)))
    assert features["seen"].shape == (len(examples.targets), num_items + 1)
    assert features["candidates"].shape == (len(examples.targets), NUM_SAMPLED)
    row_of = {
        (*items, future[0]): row
        for row, (items, future) in enumerate(
            zip(examples.items.tolist(), examples.futures.tolist(), strict=True)
        )
    }
    assert len(row_of) == len(examples.targets)
    for batch_row in range(len(examples.targets)):
        key = (*features["items"][batch_row].numpy().tolist(), int(features["candidates"][batch_row, 0]))
        row = row_of[key]
        seen = np.flatnonzero(features["seen"][batch_row].numpy())
        assert sorted(seen.tolist()) == sorted(examples.seen[row].tolist())
        futures = [int(i) for i in examples.futures[row] if i]
        expected = np.zeros(num_items + 1, np.float32)
        for item, weight in zip(futures, NEXT_ITEM_WEIGHTS, strict=False):
            expected[item] = weight
        np.testing.assert_allclose(labels["retrieval"][batch_row], expected / expected.sum(), rtol=1e-6)
    assert labels["ranking"].numpy().tolist() == [0] * len(examples.targets)


def test_training_model_gives_seen_items_no_chance_in_either_loss():
    from dataio.movielens import GENRES
    from model_build.model import ModelConfig, ModelLayers, build_training_model
    from rtrec.features import SEQUENCE_LENGTH

    num_items, num_sampled = 6, 4
    config = ModelConfig(embedding_dim=4, signal_dim=2, genre_dim=2, encoder_units=4, head_units=2)
    layers = ModelLayers(num_items, np.ones((num_items + 1, len(GENRES)), np.float32), config)
    model = build_training_model(layers, num_sampled)
    seen = np.zeros((1, num_items + 1), np.float32)
    seen[0, [2, 5]] = 1.0
    out = model(
        {
            "items": np.array([[0] * (SEQUENCE_LENGTH - 2) + [2, 5]], np.int32),
            "signals": np.zeros((1, SEQUENCE_LENGTH), np.int32),
            "candidates": np.array([[3, 2, 1, 5]], np.int32),
            "seen": seen,
        }
    )
    retrieval = out["retrieval"].numpy()[0]
    assert (retrieval[[0, 2, 5]] < -1e8).all()
    assert (retrieval[[1, 3, 4, 6]] > -1e3).all()
    ranking = out["ranking"].numpy()[0]
    assert (ranking[[1, 3]] < -1e8).all() and (ranking[[0, 2]] > -1e3).all()
