"""template.yaml: translated offline with samtranslator, then the settings that matter are asserted.

`sam validate --lint` is shallow (it accepts python3.99 and BatchSize 100000), so this test is where
the event source mapping, the table, the stream, the authorizer and the policies are pinned down.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = yaml_parse((REPO_ROOT / "template.yaml").read_text())
CONTRACT_ENV = {
    "USER_STATE_TABLE",
    "EVENT_STREAM_NAME",
    "DEAD_LETTER_QUEUE_URL",
    "MODEL_DIR",
    "ALLOWED_ORIGINS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaKinesisExecutionRole",
}


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


def translate(parameters: dict | None = None) -> dict:
    template = copy.deepcopy(TEMPLATE)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):  # sam package would upload these
                properties[key] = f"s3://bucket/{properties[key]}"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, parameters or {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def cfn() -> dict:
    return translate()["Resources"]


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def test_globals_runtime_tracing_and_contract_environment():
    function = TEMPLATE["Globals"]["Function"]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["x86_64"]
    assert function["Tracing"] == "Active"
    names = set(function["Environment"]["Variables"])
    assert names >= CONTRACT_ENV
    # Tests run with the same configuration surface (tests/conftest.py sets it).
    assert names <= set(os.environ)


def test_every_function_gets_the_environment_and_the_layers(cfn):
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert {"CollectFunction", "IngestFunction"} <= set(functions)
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12", name
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        assert set(properties["Environment"]["Variables"]) >= CONTRACT_ENV, name
        layer_refs = [layer["Ref"] for layer in properties["Layers"]]
        assert any(ref.startswith("DependencyLayer") for ref in layer_refs), name
        assert any(ref.startswith("CoreLayer") for ref in layer_refs), name
        handler_module, handler_function = properties["Handler"].split(".")
        source = REPO_ROOT / properties["Code"]["S3Key"] / f"{handler_module}.py"
        assert f"def {handler_function}(" in source.read_text(), name


def test_ingest_event_source_mapping(cfn):
    (mapping,) = of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    p = mapping["Properties"]
    assert p["EventSourceArn"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    assert p["FunctionName"] == {"Ref": "IngestFunction"}
    assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert p["BisectBatchOnFunctionError"] is True
    assert 0 <= p["MaximumRetryAttempts"] <= 10  # finite (-1 would be forever)
    assert 60 <= p["MaximumRecordAgeInSeconds"] <= 6 * 3600
    assert p["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert 2 <= p["ParallelizationFactor"] <= 10
    assert p["MaximumBatchingWindowInSeconds"] <= 1  # freshness first
    assert 1 <= p["BatchSize"] <= 100
    assert p["StartingPosition"] == "TRIM_HORIZON"
    ingest = cfn["IngestFunction"]["Properties"]
    assert any(layer["Ref"].startswith("ModelLayer") for layer in ingest["Layers"])  # items.json


def test_stream_is_encrypted(cfn):
    stream = cfn["EventStream"]["Properties"]
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert stream["RetentionPeriodHours"] >= 24


def test_user_state_table(cfn):
    table = cfn["UserStateTable"]
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert p["AttributeDefinitions"] == [{"AttributeName": "user_id", "AttributeType": "S"}]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_dead_letter_queue_is_encrypted_and_kept_long_enough(cfn):
    p = cfn["DeadLetterQueue"]["Properties"]
    assert p["SqsManagedSseEnabled"] is True
    assert p["MessageRetentionPeriod"] >= 7 * 24 * 3600


def _statements(role: dict) -> list[dict]:
    return [
        s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_policies_are_least_privilege(cfn):
    roles = of_type(cfn, "AWS::IAM::Role")
    assert roles
    for name, role in roles.items():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= MANAGED_POLICIES, name
        for statement in _statements(role):
            assert statement["Effect"] == "Allow"
            for action in _actions(statement):
                assert "*" not in action, f"{name}: wildcard action {action}"
            assert statement["Resource"] != "*", f"{name}: wildcard resource"


def test_collect_may_only_put_records_on_the_stream(cfn):
    (statement,) = _statements(cfn["CollectFunctionRole"])
    assert _actions(statement) == ["kinesis:PutRecords"]
    assert statement["Resource"] == {"Fn::GetAtt": ["EventStream", "Arn"]}


def test_ingest_may_read_and_write_state_and_dead_letter(cfn):
    grants = {
        (action, json.dumps(s["Resource"], sort_keys=True))
        for s in _statements(cfn["IngestFunctionRole"])
        for action in _actions(s)
    }
    table = json.dumps({"Fn::GetAtt": ["UserStateTable", "Arn"]})
    queue = json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    assert grants == {
        ("dynamodb:BatchGetItem", table),
        ("dynamodb:GetItem", table),
        ("dynamodb:PutItem", table),
        ("sqs:SendMessage", queue),
    }


def test_every_route_needs_the_jwt_authorizer(cfn):
    body = cfn["Api"]["Properties"]["Body"]
    routes = {(method.upper(), path) for path, methods in body["paths"].items() for method in methods}
    assert ("POST", "/v1/events") in routes
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            assert operation["security"] == [{"CognitoAuthorizer": []}], (method, path)
    authorizer = body["components"]["securitySchemes"]["CognitoAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    issuer = authorizer["jwtConfiguration"]["issuer"]["Fn::If"]
    assert issuer[0] == "CreateUserPool"
    assert "cognito-idp" in issuer[1]["Fn::Sub"] and issuer[2] == {"Ref": "JwtIssuerUrl"}


def test_external_identity_provider_replaces_the_user_pool():
    resources = translate({"JwtIssuerUrl": "https://id.example.com", "JwtAudience": "a,b"})["Resources"]
    assert resources["UserPool"]["Condition"] == "CreateUserPool"
    assert resources["UserPoolClient"]["Condition"] == "CreateUserPool"
    assert TEMPLATE["Conditions"]["CreateUserPool"] == {"Fn::Equals": [{"Ref": "JwtIssuerUrl"}, ""]}


def test_cors_comes_from_a_parameter_without_wildcard(cfn):
    parameter = TEMPLATE["Parameters"]["AllowedOrigins"]
    assert "*" not in parameter["Default"]
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match("https://app.example.com,https://admin.example.com")
    assert not pattern.match("*")
    assert not pattern.match("https://*.example.com")
    cors = cfn["Api"]["Properties"]["Body"]["x-amazon-apigateway-cors"]["Fn::If"][1]
    assert cors["allowOrigins"] == {"Fn::Split": [",", "http://localhost:3000"]}
    assert set(cors["allowHeaders"]) == {"authorization", "content-type"}


def test_layers_are_built_for_python312_with_cross_platform_pip():
    resources = TEMPLATE["Resources"]
    for name in ("DependencyLayer", "CoreLayer"):
        assert resources[name]["Metadata"]["BuildMethod"] == "makefile"
        assert resources[name]["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        makefile = (REPO_ROOT / resources[name]["Properties"]["ContentUri"] / "Makefile").read_text()
        assert f"build-{name}:" in makefile
    deps_makefile = (REPO_ROOT / "layers/deps/Makefile").read_text()
    for flag in (
        "--platform manylinux_2_28_x86_64",
        "--python-version 3.12",
        "--implementation cp",
        "--only-binary=:all:",
    ):
        assert flag in deps_makefile
    # sam build may copy the layer folder elsewhere, so it carries its own copy of the requirements.
    assert (REPO_ROOT / "layers/deps/requirements.txt").read_text() == (
        REPO_ROOT / "requirements/runtime.txt"
    ).read_text()
    assert resources["ModelLayer"]["Properties"]["ContentUri"] == "layers/model"  # -> /opt/model
