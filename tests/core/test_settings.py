"""One settings object per function: read once, typed, bounded, with errors that name the variable."""

from __future__ import annotations

import pytest

from rtrec.settings import CollectSettings, IngestSettings, RecommendSettings, SettingsError

RECOMMEND = {"USER_STATE_TABLE": "t", "MODEL_DIR": "/opt/model"}


def test_defaults_are_the_documented_ones():
    settings = RecommendSettings.from_env(RECOMMEND)
    assert (settings.retrieval_size, settings.exploration_share, settings.genre_cap_share) == (128, 0.1, 0.6)
    assert settings.exploration_rate == 0.2
    assert settings.dynamodb.worst_case_s() <= 1.0
    assert settings.catalog_table is None and settings.promotion_share == 0.0


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("EXPLORATION_SHARE", "5", "between 0 and 0.5"),  # nine of ten slots to exploration, before
        ("EXPLORATION_SHARE", "0,1", "not a number"),  # crashed the function at import, before
        ("RETRIEVAL_SIZE", "12.5", "whole number"),
        ("DYNAMODB_READ_TIMEOUT_S", "60", "between"),
        ("PROMOTION_FILTER", "price<=cheap", "needs a number"),
    ],
)
def test_a_bad_value_stops_init_with_an_error_naming_the_variable(name, value, says):
    with pytest.raises(SettingsError, match=name) as error:
        RecommendSettings.from_env({**RECOMMEND, name: value})
    assert says in str(error.value)


def test_required_variables_are_named_when_missing():
    with pytest.raises(SettingsError, match="EVENT_STREAM_NAME"):
        CollectSettings.from_env({})
    with pytest.raises(SettingsError, match="DEAD_LETTER_QUEUE_URL"):
        IngestSettings.from_env({"USER_STATE_TABLE": "t"})


def test_a_wildcard_origin_is_dropped():
    settings = CollectSettings.from_env({"EVENT_STREAM_NAME": "s", "ALLOWED_ORIGINS": "*, https://a.example"})
    assert settings.allowed_origins == ("https://a.example",)
