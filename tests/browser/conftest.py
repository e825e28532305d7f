"""The browser test's screenshot: a stable path, named at the end of every run that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

SCREENSHOT = Path(__file__).resolve().parents[2] / ".cache" / "screenshots" / "web-page-after-click.png"
_written: list[Path] = []


@pytest.fixture
def screenshot_path() -> Path:
    """Where the test saves its screenshot (.cache/ is not committed); the run's summary names it."""
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    _written.append(SCREENSHOT)
    return SCREENSHOT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in _written:
        if path.exists():
            terminalreporter.write_line(f"browser test screenshot: {path}")
