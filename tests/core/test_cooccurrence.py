"""Item neighbours and their votes (rtrec.cooccurrence): the arrays, the settings, the vote rule."""

from __future__ import annotations

import numpy as np
import pytest

from rtrec.cooccurrence import BlendSettings, ItemNeighbours


def neighbours() -> ItemNeighbours:
    # 5 items: 1 -> (2: 0.6, 3: 0.4); 2 -> (4: 1.0); 3 -> (2: 0.5, 5: 0.5); 4, 5 -> nothing
    indptr = np.array([0, 0, 2, 3, 5, 5, 5])
    return ItemNeighbours(indptr, np.array([2, 3, 4, 2, 5]), np.array([0.6, 0.4, 1.0, 0.5, 0.5]))


def history(*items: int) -> np.ndarray:
    out = np.zeros(50, dtype=np.int32)
    out[50 - len(items) :] = items
    return out


def as_dict(result: tuple[np.ndarray, np.ndarray]) -> dict[int, float]:
    candidates, vote = result
    assert candidates.shape == vote.shape and len(set(candidates.tolist())) == candidates.size
    return {int(c): round(float(v), 6) for c, v in zip(candidates, vote, strict=True)}


def test_one_recent_item_votes_its_followers():
    assert as_dict(neighbours().votes(history(3, 1), recent=1, recent_decay=0.5)) == {2: 0.6, 3: 0.4}


def test_older_items_vote_with_decayed_weight_and_votes_add_up():
    # newest 1 (factor 1), then 3 (factor 0.5): 2 gets 0.6 + 0.5 * 0.5, 5 gets 0.5 * 0.5
    votes = as_dict(neighbours().votes(history(3, 1), recent=2, recent_decay=0.5))
    assert votes == {2: 0.85, 3: 0.4, 5: 0.25}


def test_repeats_and_padding_do_not_take_a_recent_slot():
    # the history ends 3, 1, 1 (a click after a view of item 1): the two latest distinct items are 1 and 3
    once = neighbours().votes(history(3, 1), recent=2, recent_decay=0.5)
    repeated = neighbours().votes(history(3, 1, 1), recent=2, recent_decay=0.5)
    assert as_dict(once) == as_dict(repeated)
    assert neighbours().votes(history(), recent=3, recent_decay=0.5)[0].size == 0


def test_items_without_followers_or_outside_the_table_vote_nothing():
    assert neighbours().votes(history(4, 5), recent=2, recent_decay=1.0)[0].size == 0
    assert as_dict(neighbours().votes(history(1, 99), recent=1, recent_decay=1.0)) == {2: 0.6, 3: 0.4}


def test_save_and_load_round_trip(tmp_path):
    table = neighbours()
    table.save(tmp_path / "n.npz")
    loaded = ItemNeighbours.load(tmp_path / "n.npz")
    assert len(loaded) == 5 and loaded.content_bytes() == table.content_bytes()


@pytest.mark.parametrize(
    ("indptr", "items", "weights"),
    [
        ([0, 0, 2], [1, 1], [0.5]),  # shapes differ
        ([0, 0, 3], [1, 1], [0.5, 0.5]),  # indptr does not end at the number of entries
        ([0, 2, 1, 2], [1, 1], [0.5, 0.5]),  # decreasing
        ([0, 0, 1], [2], [1.0]),  # neighbour 2 in a one-item table
        ([0, 0, 1], [0], [1.0]),  # padding as a neighbour
    ],
)
def test_malformed_arrays_are_refused(indptr, items, weights):
    with pytest.raises(ValueError):
        ItemNeighbours(np.array(indptr), np.array(items), np.array(weights))


def test_blend_settings_from_metadata():
    serving = {"weight": 4.0, "recent": 2, "recent_decay": 0.5}
    assert BlendSettings.from_metadata({"cooccurrence": {"serving": serving}}) == BlendSettings(4.0, 2, 0.5)
    assert BlendSettings.from_metadata({}) is None
    assert BlendSettings.from_metadata({"cooccurrence": {"chosen_on": "validation"}}) is None
    assert BlendSettings.from_metadata({"cooccurrence": {"serving": {**serving, "weight": 0}}}) is None
    for bad in ({"weight": -1.0}, {"weight": float("nan")}, {"recent": 0}, {"recent_decay": 0.0}):
        with pytest.raises(ValueError):
            BlendSettings.from_metadata({"cooccurrence": {"serving": {**serving, **bad}}})
