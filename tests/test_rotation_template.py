"""template.yaml: the recommend function's impression lines reach the ingest function's shown-item fold."""

from __future__ import annotations

from rtrec.impressions import FILTER_PATTERN
from tests.test_template import of_type, translate


def test_a_subscription_filter_sends_impression_lines_to_the_ingest_alias():
    resources = translate()["Resources"]
    (subscription,) = [
        r
        for r in of_type(resources, "AWS::Logs::SubscriptionFilter").values()
        if r["Properties"]["DestinationArn"] == {"Ref": "IngestFunctionAliaslive"}
    ]
    assert subscription["Properties"]["LogGroupName"] == {"Ref": "RecommendLogGroup"}
    assert subscription["Properties"]["FilterPattern"] == FILTER_PATTERN  # the lines rtrec.impressions writes
    (permission,) = [
        r
        for r in of_type(resources, "AWS::Lambda::Permission").values()
        if r["Properties"]["Principal"] == "logs.amazonaws.com"
        and r["Properties"]["FunctionName"] == {"Ref": "IngestFunctionAliaslive"}
    ]
    assert "RecommendLogGroup" in str(permission["Properties"]["SourceArn"])  # that log group only
    # A log group takes at most two subscription filters.
    on_recommend = [
        r
        for r in of_type(resources, "AWS::Logs::SubscriptionFilter").values()
        if r["Properties"]["LogGroupName"] == {"Ref": "RecommendLogGroup"}
    ]
    assert len(on_recommend) <= 2


def test_rotation_and_paging_settings_are_the_documented_defaults():
    environment = translate()["Resources"]["RecommendFunction"]["Properties"]["Environment"]["Variables"]
    assert (environment["ROTATION_RATE"], environment["ROTATION_TIME_SECONDS"]) == ("0.1", "7200")
    assert environment["PAGING_WINDOW_SECONDS"] == "1800"
