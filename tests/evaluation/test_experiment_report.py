"""Attribution SQL on a tiny archive (hand-computed), the report's statistics and guardrails."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from dataio.archive import SQL_DIR, sql_text
from evaluation.experiment_report import (
    ATTRIBUTION_QUERIES,
    build_report,
    connect,
    main,
    resplit_check,
    run_attribution,
    two_proportion_z_test,
    wilson_interval,
)
from rtrec.impressions import impression_record

T = 1_764_288_000_000 + 3_600_000  # 2025-11-28T01:00:00Z
WINDOW_MS = 1_800_000
DAY = "2025-11-28"


def write(root: Path, kind: str, name: str, records: list[dict]) -> None:
    directory = root / "events" / f"kind={kind}" / f"dt={DAY}"
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    (directory / f"{name}.jsonl.gz").write_bytes(gzip.compress(text.encode()))


def shown(rid, user, variant, items, experiment="exp", degraded=False, latency_ms=10.0):
    record = impression_record(
        rid, user, "GET /v1/recommendations", "v1", items, T, variant,
        experiment=experiment, source="model", degraded=degraded, latency_ms=latency_ms,
    )  # fmt: skip
    return {"level": "INFO", "message": "impression", "timestamp": "2025-11-28 01:00:00", **record}


def event(user, event_id, item, type_, ts, rid):
    return {"user_id": user, "event_id": event_id, "item_id": item, "type": type_, "ts": ts,
            "recommendation_id": rid}  # fmt: skip


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    r1 = shown("r1", "u1", "A", [("i1", "model"), ("i2", "explore"), ("i3", "model")], latency_ms=10)
    write(tmp_path, "impression", "a", [
        r1,
        shown("r2", "u2", "A", [("i2", "model"), ("i1", "popular")], latency_ms=20),
        shown("r3", "u3", "B", [("i3", "popular"), ("i4", "popular")], degraded=True, latency_ms=500),
        shown("r4", "u4", None, [("i1", "model")], experiment=None),
    ])  # fmt: skip
    write(tmp_path, "impression", "b", [r1])  # Firehose delivered r1 twice
    write(tmp_path, "event", "c", [
        event("u1", "e1", "i2", "click", T + 1000, "r1"),  # r1, position 2 (explore)
        event("u1", "e1", "i2", "click", T + 1000, "r1"),  # the same event again
        event("u1", "e2", "i2", "add_to_cart", T + 2000, "r1"),  # r1 converts
        event("u2", "e3", "i1", "click", T + WINDOW_MS + 1, "r2"),  # after the window
        event("u2", "e4", "i2", "click", T + 10, "r1"),  # another user's list
        event("u2", "e5", "i2", "view", T + 10, "r2"),  # a view is not a click
        event("u3", "e6", "i4", "click", T + 500, "r3"),  # r3, position 2
        event("u3", "e7", "i3", "click", T - 10, "r3"),  # before the answer
        event("u3", "e8", "i9", "purchase", T + 600, "r3"),  # an item the list did not show
    ])  # fmt: skip
    return tmp_path


def rows(connection, name, **match):
    return [
        r
        for r in run_attribution(connection, name, DAY, DAY, WINDOW_MS)
        if all(r[k] == v for k, v in match.items())
    ]


def test_attribution_by_variant_position_reason_and_list(archive):
    connection = connect(archive)
    by_variant = {r["variant"]: r for r in rows(connection, "attribution_by_variant", experiment="exp")}
    a, b = by_variant["A"], by_variant["B"]
    assert (a["impressions"], a["users"], a["clicked"], a["converted"]) == (2, 2, 1, 1)
    assert (a["ctr"], a["ctr_at_1"], a["ctr_at_5"], a["conversion_rate"]) == (0.5, 0.0, 0.5, 0.5)
    assert (b["impressions"], b["clicked"], b["converted"], b["ctr"]) == (1, 1, 0, 1.0)
    assert (a["degraded_share"], b["degraded_share"]) == (0.0, 1.0) and a["mean_latency_ms"] == 15.0
    positions = {
        (r["variant"], r["position"]): (r["shown"], r["clicks"])
        for r in rows(connection, "attribution_by_position")
    }
    assert positions == {("A", 1): (2, 0), ("A", 2): (2, 1), ("A", 3): (1, 0),
                         ("B", 1): (1, 0), ("B", 2): (1, 1), (None, 1): (1, 0)}  # fmt: skip
    reasons = {(r["variant"], r["reason"]): (r["shown"], r["clicks"], r["conversions"])
               for r in rows(connection, "attribution_by_reason", experiment="exp")}  # fmt: skip
    assert reasons == {("A", "explore"): (1, 1, 1), ("A", "model"): (3, 0, 0), ("A", "popular"): (1, 0, 0),
                       ("B", "popular"): (2, 1, 0)}  # fmt: skip
    lists = {r["recommendation_id"]: r for r in rows(connection, "attribution_lists")}
    assert set(lists) == {"r1", "r2", "r3", "r4"}  # r1 once
    assert (lists["r1"]["shown"], lists["r1"]["clicks"], lists["r1"]["first_click_position"]) == (3, 1, 2)
    assert (
        lists["r1"]["converted"] == 1
        and lists["r2"]["clicks"] == 0
        and lists["r2"]["first_click_position"] is None
    )
    # A window of a millisecond keeps only what happened at once: nothing here.
    assert all(r["clicks"] == 0 for r in run_attribution(connection, "attribution_lists", DAY, DAY, 1))
    connection.close()


def test_the_attribution_files_share_their_ctes_and_parameters():
    names = sorted(p.stem for p in SQL_DIR.glob("attribution*.sql"))
    assert names == sorted(ATTRIBUTION_QUERIES)
    shared = re.compile(r"WITH impression_copies AS \(.*?\noutcomes AS \(.*?\n\)", re.DOTALL)
    texts = {name: sql_text(name) for name in names}
    assert len({shared.search(text).group(0) for text in texts.values()}) == 1
    for name, text in texts.items():
        assert text.count("?") == 5 and text.count("dt BETWEEN ? AND ?") == 2, name
        assert not text.rstrip().endswith(";"), name


def test_wilson_interval_and_the_z_test_on_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(5, 10, 0.99)[0] < 0.2366  # wider at a higher confidence
    test = two_proportion_z_test(50, 100, 30, 100)
    assert test.difference == pytest.approx(-0.2)
    assert test.z == pytest.approx(-2.8868, abs=1e-4) and test.p_value == pytest.approx(0.00389, abs=1e-5)
    assert two_proportion_z_test(30, 100, 30, 100).p_value == pytest.approx(1.0)
    assert two_proportion_z_test(0, 10, 0, 10).p_value == 1.0  # no variance: no evidence


def test_the_report_tests_against_the_control_and_flags_guardrails(archive):
    connection = connect(archive)
    report = build_report(
        connection, first_day=DAY, last_day=DAY, window_ms=WINDOW_MS, alpha=0.05,
        max_degraded_share=0.05, max_latency_p95_ms=250, categories={"i1": frozenset({"x"}),
        "i2": frozenset({"x", "y"}), "i3": frozenset({"z"}), "i4": frozenset()},
    )  # fmt: skip
    connection.close()
    experiment = report["experiments"]["exp"]
    assert list(report["experiments"]) == ["exp"]  # answers outside experiments are left out
    assert experiment["variants"] == ["A", "B"] and experiment["control"] == "A"
    a, b = experiment["arms"]["A"], experiment["arms"]["B"]
    assert (a["impressions"], a["ctr"], a["conversion"]) == (2, 0.5, 0.5)
    assert a["ctr_ci"] == pytest.approx(wilson_interval(1, 2))
    assert a["coverage"] == 0.75 and b["coverage"] == 0.5  # {i1, i2, i3} and {i3, i4} of four
    # r1: pairs (i1,i2) 0.5, (i1,i3) 1, (i2,i3) 1 -> 5/6; r2: (i2,i1) 0.5 -> A = (5/6 + 0.5) / 2
    assert a["diversity"] == pytest.approx((5 / 6 + 0.5) / 2)
    assert a["guardrails"] == [] and len(b["guardrails"]) == 2
    test = experiment["tests"]["B"]
    assert test["against"] == "A" and test["ctr"]["p_value"] == pytest.approx(
        two_proportion_z_test(1, 2, 1, 1).p_value
    )
    assert not test["ctr"]["significant"]


def test_the_cli_writes_markdown_json_and_a_chart(archive, tmp_path, capsys):
    out = tmp_path / "out" / "report"
    assert main([str(archive), "--out", str(out)]) == 0
    assert "| exp | A | 2 |" in out.with_suffix(".md").read_text()
    assert json.loads(out.with_suffix(".json").read_text())["experiments"]["exp"]["control"] == "A"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path / "empty"), "--out", str(out)]) == 1


def test_resplits_count_how_often_two_halves_of_the_same_answers_test_different():
    # 400 users, every other one clicked: random halves differ only by chance.
    same = [{"user_id": f"u{n}", "clicks": n % 2} for n in range(400)]
    check = resplit_check(same, "exp", 200, 0.05)
    assert check["splits"] == 200 and check["share"] < 0.12
    # Users whose clicks depend on the same hash the halves use are always told apart.
    from rtrec.experiments import BUCKETS, bucket

    split_by_hash = [
        {"user_id": f"u{n}", "clicks": int(bucket("exp-resplit-0", f"u{n}") < BUCKETS // 2)}
        for n in range(400)
    ]
    assert resplit_check(split_by_hash, "exp", 1, 0.05)["significant"] == 1
