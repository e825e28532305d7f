"""evaluation.as_served: the template's ranking settings, read from the file, reach the handler."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evaluation import as_served
from rtrec.settings import RecommendSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_template_settings_are_read_from_the_template():
    settings = as_served.template_settings()
    assert set(settings) == set(as_served.SERVING_SETTINGS)
    text = (REPO_ROOT / "template.yaml").read_text()
    for name, value in settings.items():
        assert re.search(rf'^\s+{name}: "{re.escape(value)}"', text, flags=re.MULTILINE)


def test_the_settings_defaults_are_the_templates():
    # A function deployed without the variables must rank like the template's: same defaults.
    template = as_served.template_settings()
    defaults = RecommendSettings.from_env({"USER_STATE_TABLE": "t", "MODEL_DIR": "/opt/model"})
    assert defaults.retrieval_size == int(template["RETRIEVAL_SIZE"])
    assert defaults.exploration_share == float(template["EXPLORATION_SHARE"])
    assert defaults.exploration_rate == float(template["EXPLORATION_RATE"])
    assert defaults.genre_cap_share == float(template["GENRE_CAP_SHARE"])


def test_a_setting_set_two_ways_is_refused(tmp_path):
    template = tmp_path / "template.yaml"
    lines = [f'      {name}: "1"' for name in as_served.SERVING_SETTINGS] + ['      GENRE_CAP_SHARE: "0.5"']
    template.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="GENRE_CAP_SHARE"):
        as_served.template_settings(template)


def _section(body: str) -> str:
    name = "as-served"
    return f"{as_served.SECTION_BEGIN.format(name=name)}\n{body}\n{as_served.SECTION_END.format(name=name)}\n"


def test_put_section_replaces_its_own_section_only():
    first = as_served.put_section("# Report\n\ntext\n", "as-served", _section("A"))
    assert first.startswith("# Report\n\ntext\n") and "\nA\n" in first
    second = as_served.put_section(first, "as-served", _section("B"))
    assert "\nB\n" in second and "\nA\n" not in second and second.startswith("# Report\n\ntext\n")
