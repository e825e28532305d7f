"""Marked sections of `model_build/report.md` that other evaluations own.

`make evaluate` rewrites the report and carries the sections over; each writer (another dataset's
evaluation, the as-served evaluation, the new-item measurement) replaces only its own, found by name
whatever its opening line says about the command that wrote it.
"""

from __future__ import annotations

import re

END = "<!-- end of section {name} -->"


def put_section(markdown: str, name: str, section: str) -> str:
    """`markdown` with the section `name` replaced by `section` (appended when it is not there)."""
    pattern = re.compile(
        r"<!-- section " + re.escape(name) + r": .*?" + re.escape(END.format(name=name)) + r"\n?",
        re.DOTALL,
    )
    if pattern.search(markdown):
        return pattern.sub(lambda _: section, markdown, count=1)
    return markdown.rstrip("\n") + "\n\n" + section
