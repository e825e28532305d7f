"""template.yaml: translated offline with samtranslator, then the settings that matter are asserted.

`sam validate --lint` is shallow (it accepts python3.99 and BatchSize 100000), so this test is where
the event source mapping, the table, the stream, the authorizer, the policies, the alarms and the
deployment settings are pinned down. Conditions are evaluated here too (`under`), so a test can say
what CloudFormation creates for a given set of parameters, not only what the transform emits.
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
# SAM's role for CodeDeploy (DeploymentPreference) shifts the functions' aliases.
CODEDEPLOY_POLICY = "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"
API_FUNCTIONS = ("CatalogFunction", "CollectFunction", "IngestFunction", "RecommendFunction")
# The catalog admin routes take IAM-signed requests only, never an end user's token.
ADMIN_ROUTES = {
    ("PUT", "/v1/items/{item_id}"),
    ("GET", "/v1/items/{item_id}"),
    ("DELETE", "/v1/items/{item_id}"),
    ("POST", "/v1/items/batch"),
}
SCOPES = {
    ("POST", "/v1/events"): "rtrec/events.write",
    ("GET", "/v1/recommendations"): "rtrec/recommendations.read",
    ("POST", "/v1/recommendations/rank"): "rtrec/recommendations.read",
    ("GET", "/v1/interests"): "rtrec/recommendations.read",
    ("GET", "/v1/items/{item_id}/similar"): "rtrec/recommendations.read",
    ("DELETE", "/v1/me"): "rtrec/me.delete",
}
EXTERNAL_IDP = {"JwtIssuerUrl": "https://id.example.com", "JwtAudience": "a,b"}


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


_NO_VALUE = object()


def under(parameters: dict | None = None) -> dict:
    """The translated template as CloudFormation would create it with these parameter values.

    Resources and outputs whose Condition is false are dropped, every Fn::If is decided, AWS::NoValue
    disappears and Refs to parameters become their values; references to resources stay as they are.
    """
    translated = translate(parameters)
    values = {name: spec.get("Default") for name, spec in translated.get("Parameters", {}).items()}
    values.update(parameters or {})
    conditions = translated.get("Conditions", {})

    def holds(expression) -> bool:
        if isinstance(expression, str):
            return holds(conditions[expression])
        ((key, argument),) = expression.items()
        if key == "Fn::Equals":
            left, right = (decide(v) for v in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not holds(argument[0])
        if key == "Fn::And":
            return all(holds(c) for c in argument)
        if key == "Fn::Or":
            return any(holds(c) for c in argument)
        if key == "Condition":
            return holds(argument)
        raise ValueError(key)

    def decide(value):
        if isinstance(value, list):
            return [v for v in map(decide, value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if list(value) == ["Fn::If"]:
            name, when_true, when_false = value["Fn::If"]
            return decide(when_true if holds(name) else when_false)
        if value == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if list(value) == ["Ref"] and value["Ref"] in values:
            return values[value["Ref"]]
        return {k: v for k, v in ((k, decide(v)) for k, v in value.items()) if v is not _NO_VALUE}

    out = {}
    for section in ("Resources", "Outputs"):
        out[section] = {
            name: decide(item)
            for name, item in translated.get(section, {}).items()
            if item.get("Condition") is None or holds(item["Condition"])
        }
    return out


def references(value) -> set[str]:
    """Logical ids a value refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= references(v)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else argument.split(".")[0])
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                local = set() if isinstance(argument, str) else set(argument[1])
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)} - local
                if not isinstance(argument, str):
                    found |= references(argument[1])
            else:
                found |= references(argument)
    return {name for name in found if not name.startswith("AWS::")}


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
    assert set(API_FUNCTIONS) <= set(functions)
    for name, function in functions.items():
        properties = function["Properties"]
        if "ZipFile" in properties["Code"]:  # the Cognito trigger: inline code, tested on its own
            continue
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
    assert p["FunctionName"] == {"Ref": "IngestFunctionAliaslive"}  # the alias CodeDeploy shifts
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
    policies = of_type(cfn, "AWS::IAM::Policy")
    for name, role in {**roles, **policies}.items():
        managed = set(role["Properties"].get("ManagedPolicyArns", []))
        allowed = {CODEDEPLOY_POLICY} if name == "CodeDeployServiceRole" else MANAGED_POLICIES
        assert managed <= allowed, name
        statements = (
            role["Properties"]["PolicyDocument"]["Statement"] if name in policies else _statements(role)
        )
        for statement in statements:
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
        ("dynamodb:UpdateItem", json.dumps({"Fn::GetAtt": ["TrendingTable", "Arn"]})),
    }


def _route_scopes(resources: dict) -> dict[tuple[str, str], list]:
    body = resources["Api"]["Properties"]["Body"]
    out = {}
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            if (method.upper(), path) in ADMIN_ROUTES:
                assert operation["security"] == [{"AWS_IAM": []}], (method, path)
                continue
            ((name, scopes),) = operation["security"][0].items()
            assert operation["security"] == [{name: scopes}] and name == "CognitoAuthorizer", (method, path)
            out[(method.upper(), path)] = scopes
    return out


def test_every_route_needs_the_jwt_authorizer_and_its_scope(cfn):
    assert set(_route_scopes(cfn)) == set(SCOPES)
    # With the stack's own user pool every route requires its Cognito scope, so only access tokens
    # pass (an ID token has no `scope` claim).
    assert _route_scopes(under()["Resources"]) == {route: [scope] for route, scope in SCOPES.items()}
    body = cfn["Api"]["Properties"]["Body"]
    authorizer = body["components"]["securitySchemes"]["CognitoAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    issuer = authorizer["jwtConfiguration"]["issuer"]["Fn::If"]
    assert issuer[0] == "CreateUserPool"
    assert "cognito-idp" in issuer[1]["Fn::Sub"] and issuer[2] == {"Ref": "JwtIssuerUrl"}


def test_external_identity_provider_replaces_the_user_pool():
    own = under()
    external = under(EXTERNAL_IDP)
    cognito = {name for name, r in own["Resources"].items() if r["Type"].startswith("AWS::Cognito::")}
    assert cognito == {"UserPool", "UserPoolClient", "UserPoolResourceServer"}
    gone = set(own["Resources"]) - set(external["Resources"])
    assert cognito | {"AccessTokenScopesFunction", "AccessTokenScopesPermission"} <= gone
    assert not any(r["Type"].startswith("AWS::Cognito::") for r in external["Resources"].values())
    # Nothing CloudFormation still creates refers to what the condition removed.
    for name, item in {**external["Resources"], **external["Outputs"]}.items():
        assert not references(item) & gone, name
    assert {"UserPoolId", "UserPoolClientId"} <= set(own["Outputs"]) - set(external["Outputs"])

    def jwt(resources: dict) -> dict:
        body = resources["Api"]["Properties"]["Body"]
        return body["components"]["securitySchemes"]["CognitoAuthorizer"]["x-amazon-apigateway-authorizer"][
            "jwtConfiguration"
        ]

    assert jwt(external["Resources"]) == {
        "issuer": "https://id.example.com",
        "audience": {"Fn::Split": [",", "a,b"]},
    }
    assert jwt(own["Resources"])["audience"] == [{"Ref": "UserPoolClient"}]
    assert "${UserPool}" in jwt(own["Resources"])["issuer"]["Fn::Sub"]
    # An external provider names its scopes itself: empty parameters = no scope check...
    assert all(scopes == [] for scopes in _route_scopes(external["Resources"]).values())
    # ...and each given parameter becomes the scope of its routes.
    named = under(
        {
            **EXTERNAL_IDP,
            "JwtScopeEventsWrite": "write:events",
            "JwtScopeRecommendationsRead": "read:recs",
            "JwtScopeMeDelete": "delete:me",
        }
    )
    by_scope = {
        "rtrec/events.write": "write:events",
        "rtrec/recommendations.read": "read:recs",
        "rtrec/me.delete": "delete:me",
    }
    assert _route_scopes(named["Resources"]) == {route: [by_scope[scope]] for route, scope in SCOPES.items()}


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
    # The layer is installed from the lock (exact versions, hashes checked) that test-312 tests; sam build
    # may copy the layer folder elsewhere, so it carries its own copy of the lock.
    assert "--require-hashes" in deps_makefile
    assert (REPO_ROOT / "layers/deps/runtime.lock").read_text() == (
        REPO_ROOT / "requirements/runtime.lock"
    ).read_text()
    assert resources["ModelLayer"]["Properties"]["ContentUri"] == "layers/model"  # -> /opt/model


# ---------- identity ----------


def test_user_pool_is_protected_and_closed_to_self_sign_up_by_default(cfn):
    pool = under()["Resources"]["UserPool"]["Properties"]
    assert pool["DeletionProtection"] == "ACTIVE"
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert pool["UserPoolTier"] == "ESSENTIALS"  # access-token customization needs it
    trigger = pool["LambdaConfig"]["PreTokenGenerationConfig"]
    assert trigger == {
        "LambdaArn": {"Fn::GetAtt": ["AccessTokenScopesFunction", "Arn"]},
        "LambdaVersion": "V2_0",
    }
    opened = under({"AllowSelfSignUp": "true"})["Resources"]["UserPool"]["Properties"]
    assert opened["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": False}
    permission = cfn["AccessTokenScopesPermission"]["Properties"]
    assert permission["Principal"] == "cognito-idp.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["UserPool", "Arn"]}


def test_app_client_is_granted_exactly_the_resource_servers_scopes():
    resources = under()["Resources"]
    server = resources["UserPoolResourceServer"]["Properties"]
    defined = {f"{server['Identifier']}/{s['ScopeName']}" for s in server["Scopes"]}
    assert defined == set(SCOPES.values())
    client = resources["UserPoolClient"]
    assert client["DependsOn"] == "UserPoolResourceServer"
    p = client["Properties"]
    assert p["GenerateSecret"] is False
    assert p["AllowedOAuthFlowsUserPoolClient"] is True
    assert p["AllowedOAuthFlows"] == ["code"]  # no implicit flow: tokens never travel in a URL
    assert {s for s in p["AllowedOAuthScopes"] if s.startswith("rtrec/")} == defined
    assert p["CallbackURLs"] == {"Fn::Split": [",", "http://localhost:3000/callback"]}
    assert "ALLOW_USER_PASSWORD_AUTH" in p["ExplicitAuthFlows"]  # scripts/get_token.py
    without = under({"EnablePasswordAuth": "false"})["Resources"]["UserPoolClient"]["Properties"]
    assert without["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    # The code flow needs the pool's OAuth endpoints: a domain, when a prefix is given.
    assert "UserPoolDomain" not in resources
    with_domain = under({"UserPoolDomainPrefix": "rtrec-demo"})
    assert with_domain["Resources"]["UserPoolDomain"]["Properties"] == {
        "UserPoolId": {"Ref": "UserPool"},
        "Domain": "rtrec-demo",
    }
    assert "OAuthBaseUrl" in with_domain["Outputs"]
    external = under({**EXTERNAL_IDP, "UserPoolDomainPrefix": "rtrec-demo"})
    assert "UserPoolDomain" not in external["Resources"] and "OAuthBaseUrl" not in external["Outputs"]
    pattern = re.compile(TEMPLATE["Parameters"]["UserPoolDomainPrefix"]["AllowedPattern"])
    assert (
        pattern.match("")
        and pattern.match("rtrec-demo")
        and not pattern.match("-x")
        and not pattern.match("A")
    )


def _trigger_module():
    code = TEMPLATE["Resources"]["AccessTokenScopesFunction"]["Properties"]["InlineCode"]
    env = TEMPLATE["Resources"]["AccessTokenScopesFunction"]["Properties"]["Environment"]["Variables"]
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        exec(compile(code, "AccessTokenScopesFunction", "exec"), namespace)
    return namespace


def _token_event(pool_id: str, client_id: str, scopes: list[str]) -> dict:
    return {
        "version": "2",
        "triggerSource": "TokenGeneration_Authentication",
        "userPoolId": pool_id,
        "callerContext": {"clientId": client_id},
        "request": {"userAttributes": {"sub": "u-1"}, "scopes": scopes, "groupConfiguration": {}},
        "response": {"claimsAndScopeOverrideDetails": None},
    }


def test_pre_token_trigger_adds_the_clients_scopes_to_direct_sign_in_tokens_only(aws):
    import boto3

    cognito = boto3.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="p")["UserPool"]["Id"]
    cognito.create_resource_server(
        UserPoolId=pool_id,
        Identifier="rtrec",
        Name="rtrec",
        Scopes=[{"ScopeName": s.split("/")[1], "ScopeDescription": s} for s in set(SCOPES.values())],
    )
    full = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="app",
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", *sorted(set(SCOPES.values()))],
        CallbackURLs=["https://app.example.com/cb"],
    )["UserPoolClient"]["ClientId"]
    reader = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="reader",
        AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["rtrec/recommendations.read"],
        CallbackURLs=["https://app.example.com/cb"],
    )["UserPoolClient"]["ClientId"]
    trigger = _trigger_module()
    admin = "aws.cognito.signin.user.admin"

    def added(client_id: str, scopes: list[str]) -> list[str] | None:
        response = trigger["handler"](_token_event(pool_id, client_id, scopes), None)["response"]
        details = response.get("claimsAndScopeOverrideDetails")
        return details["accessTokenGeneration"]["scopesToAdd"] if details else None

    # InitiateAuth (SRP or password) gives only aws.cognito.signin.user.admin; the client's scopes join it.
    assert added(full, [admin]) == sorted(set(SCOPES.values()))
    # A client allowed fewer scopes gets no more through direct sign-in.
    assert added(reader, [admin]) == ["rtrec/recommendations.read"]
    # A token from the OAuth endpoints keeps the scopes its client asked for.
    assert added(full, ["openid", "rtrec/recommendations.read"]) is None


# ---------- logs ----------


def test_every_function_logs_to_a_log_group_with_the_retention_parameter(cfn):
    assert TEMPLATE["Parameters"]["LogRetentionDays"]["Default"] == 30
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert set(API_FUNCTIONS) | {"AccessTokenScopesFunction"} == set(functions)
    groups = set()
    for name, function in functions.items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        log_group = cfn[group]
        assert log_group["Type"] == "AWS::Logs::LogGroup", name
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert log_group.get("Condition") == function.get("Condition"), name
        groups.add(group)
    assert len(groups) == len(functions)
    for name, log_group in of_type(cfn, "AWS::Logs::LogGroup").items():
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_api_access_log_is_json_without_user_identifiers(cfn):
    (stage,) = of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    assert {"requestId", "routeKey", "status", "latency", "integrationErrorMessage"} <= set(fields)
    assert fields["latency"] == "$context.responseLatency"
    for forbidden in ("sub", "claims", "sourceIp", "userAgent", "principalId", "email"):
        assert forbidden not in settings["Format"], forbidden


# ---------- alarms and dashboard ----------


def _alarms(resources: dict) -> dict:
    return of_type(resources, "AWS::CloudWatch::Alarm")


def _alarm_on(resources: dict, namespace: str, metric: str, **dimensions) -> str:
    matches = [
        name
        for name, alarm in _alarms(resources).items()
        if "Metrics" not in alarm["Properties"]  # metric-math alarms are checked on their own
        and alarm["Properties"]["Namespace"] == namespace
        and alarm["Properties"]["MetricName"] == metric
        and {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]} == dimensions
    ]
    assert len(matches) == 1, (namespace, metric, dimensions, matches)
    return matches[0]


def test_alarms_cover_functions_stream_queue_custom_metrics_and_api(cfn):
    for function in (*API_FUNCTIONS, "AccessTokenScopesFunction"):
        ref = {"Ref": function}
        if function in API_FUNCTIONS:  # what the events invoke: the alias
            _alarm_on(
                cfn, "AWS/Lambda", "Errors", FunctionName=ref, Resource={"Fn::Sub": f"${{{function}}}:live"}
            )
        else:
            _alarm_on(cfn, "AWS/Lambda", "Errors", FunctionName=ref)
        _alarm_on(cfn, "AWS/Lambda", "Throttles", FunctionName=ref)
    age = cfn[_alarm_on(cfn, "AWS/Lambda", "IteratorAge", FunctionName={"Ref": "IngestFunction"})][
        "Properties"
    ]
    assert age["Statistic"] == "Maximum" and age["Threshold"] == {"Ref": "IteratorAgeAlarmMs"}
    queue = {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    dlq = cfn[_alarm_on(cfn, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue)]["Properties"]
    assert dlq["Threshold"] == 0 and dlq["ComparisonOperator"] == "GreaterThanThreshold"
    # Custom metrics are found only under the namespace and the dimension Powertools emits them with.
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    namespace, service = variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]
    for metric in ("DegradedResponses", "StateReadFailures"):
        _alarm_on(cfn, namespace, metric, service=service)
    api = {"Ref": "Api"}
    _alarm_on(cfn, "AWS/ApiGateway", "5xx", ApiId=api)
    latency = cfn[_alarm_on(cfn, "AWS/ApiGateway", "Latency", ApiId=api)]["Properties"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == {"Ref": "ApiLatencyP99AlarmMs"}
    for name, alarm in _alarms(cfn).items():
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", name


def test_alarms_notify_the_topic_only_when_one_is_given():
    for name, alarm in _alarms(under()["Resources"]).items():
        assert "AlarmActions" not in alarm["Properties"] and "OKActions" not in alarm["Properties"], name
    topic = "arn:aws:sns:us-east-1:123456789012:ops"
    alarms = _alarms(under({"AlarmTopicArn": topic})["Resources"])
    assert len(alarms) >= 14
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [topic], name
        assert alarm["Properties"]["OKActions"] == [topic], name


def test_dashboard_shows_the_alarmed_metrics(cfn):
    (dashboard,) = of_type(cfn, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    for name in references({"Fn::Sub": text}):
        assert name in cfn, name
    body = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
    metrics = {
        (m[0], m[1])
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for m in widget["properties"]["metrics"]
        if m[0] not in (".", "...")
    }
    named = {m for _, m in metrics} | {
        m[1]
        for w in body["widgets"]
        if w["type"] == "metric"
        for m in w["properties"]["metrics"]
        if m[0] == "."
    }
    for metric in (
        "Errors",
        "Throttles",
        "IteratorAge",
        "ApproximateNumberOfMessagesVisible",
        "DegradedResponses",
        "StateReadFailures",
        "5xx",
        "Latency",
    ):
        assert metric in named, metric
    alarm_widget = next(w for w in body["widgets"] if w["type"] == "alarm")
    assert len(alarm_widget["properties"]["alarms"]) == len(_alarms(under(EXTERNAL_IDP)["Resources"]))


# ---------- deployment ----------


def test_functions_deploy_through_an_alias_with_canary_and_alarm_rollback(cfn):
    assert TEMPLATE["Parameters"]["DeploymentType"]["Default"] == "Canary10Percent5Minutes"
    integrations = json.dumps(cfn["Api"]["Properties"]["Body"]["paths"])
    for function in API_FUNCTIONS:
        alias = cfn[f"{function}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == "live"
        group = cfn[f"{function}DeploymentGroup"]["Properties"]
        assert group["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": "Canary10Percent5Minutes"}
        assert group["AutoRollbackConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
        alarms = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
        assert f"{function.removesuffix('Function')}ErrorsAlarm" in alarms
        assert alarms <= set(_alarms(cfn))
        assert f"${{{function}.Arn}}" not in integrations  # routes call the alias, never $LATEST
    assert "${CollectFunctionAliaslive}" in integrations and "${RecommendFunctionAliaslive}" in integrations
    assert "${CatalogFunctionAliaslive}" in integrations
    # A superseded version goes once the update succeeded: versions (and SnapStart snapshots) do not pile up.
    versions = of_type(cfn, "AWS::Lambda::Version")
    assert len(versions) == len(API_FUNCTIONS)
    assert all(version["DeletionPolicy"] == "Delete" for version in versions.values())
    linear = under({"DeploymentType": "Linear10PercentEvery1Minute"})["Resources"]
    assert linear["RecommendFunctionDeploymentGroup"]["Properties"]["DeploymentConfigName"]["Fn::Sub"][1] == {
        "ConfigName": "Linear10PercentEvery1Minute"
    }


def test_reserved_concurrency_is_opt_in():
    default = under()["Resources"]
    for function in API_FUNCTIONS:
        assert "ReservedConcurrentExecutions" not in default[function]["Properties"], function
    reserved = under(
        {"CollectReservedConcurrency": 20, "IngestReservedConcurrency": 4, "RecommendReservedConcurrency": 50}
    )["Resources"]
    assert reserved["CollectFunction"]["Properties"]["ReservedConcurrentExecutions"] == 20
    assert reserved["IngestFunction"]["Properties"]["ReservedConcurrentExecutions"] == 4
    assert reserved["RecommendFunction"]["Properties"]["ReservedConcurrentExecutions"] == 50


def test_snapstart_is_a_parameter_and_off_by_default():
    assert TEMPLATE["Parameters"]["EnableSnapStart"]["Default"] == "false"
    assert "SnapStart" not in under()["Resources"]["RecommendFunction"]["Properties"]
    on = under({"EnableSnapStart": "true"})["Resources"]
    assert on["RecommendFunction"]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert on["RecommendFunctionAliaslive"]["Properties"]["FunctionVersion"]["Fn::GetAtt"][1] == "Version"
    for function in ("CollectFunction", "IngestFunction"):
        assert "SnapStart" not in on[function]["Properties"], function


# ---------- routes ----------


def test_delete_me_route_may_delete_the_callers_state_only(cfn):
    assert ("DELETE", "/v1/me") in _route_scopes(cfn)
    operation = cfn["Api"]["Properties"]["Body"]["paths"]["/v1/me"]["delete"]
    assert "RecommendFunctionAliaslive" in operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
    grants = {
        (a, json.dumps(s["Resource"])) for s in _statements(cfn["RecommendFunctionRole"]) for a in _actions(s)
    }
    table = json.dumps({"Fn::GetAtt": ["UserStateTable", "Arn"]})
    feed = json.dumps({"Fn::Sub": "${CatalogTable.Arn}/index/ByUpdate"})
    trending = json.dumps({"Fn::GetAtt": ["TrendingTable", "Arn"]})
    assert grants == {
        ("dynamodb:GetItem", table),
        ("dynamodb:DeleteItem", table),
        ("dynamodb:Query", feed),
        ("dynamodb:Query", trending),
    }
    cors = cfn["Api"]["Properties"]["Body"]["x-amazon-apigateway-cors"]["Fn::If"][1]
    assert "DELETE" in cors["allowMethods"]


def test_every_route_has_its_own_throttle_and_delete_me_the_smallest(cfn):
    (stage,) = of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["RouteSettings"]
    assert set(settings) == {f"{method} {path}" for method, path in SCOPES}
    default = stage["Properties"]["DefaultRouteSettings"]
    for key, limits in settings.items():
        assert 0 < limits["ThrottlingRateLimit"] <= default["ThrottlingRateLimit"], key
        assert limits["ThrottlingRateLimit"] <= limits["ThrottlingBurstLimit"], key
    assert (
        min(s["ThrottlingRateLimit"] for s in settings.values())
        == settings["DELETE /v1/me"]["ThrottlingRateLimit"]
    )


def test_per_user_limits_reach_the_handlers(cfn):
    collect = cfn["CollectFunction"]["Properties"]["Environment"]["Variables"]
    assert collect["PER_USER_EVENT_RATE"] == {"Ref": "PerUserEventRate"}
    assert collect["PER_USER_EVENT_BURST"] == {"Ref": "PerUserEventBurst"}
    recommend = cfn["RecommendFunction"]["Properties"]["Environment"]["Variables"]
    assert recommend["PER_USER_REQUEST_RATE"] == {"Ref": "PerUserRequestRate"}
    assert recommend["PER_USER_REQUEST_BURST"] == {"Ref": "PerUserRequestBurst"}
    # A burst smaller than one full POST /v1/events (100 events) would refuse a valid request.
    assert TEMPLATE["Parameters"]["PerUserEventBurst"]["MinValue"] >= 100


# ---------- samconfig.toml ----------


def test_samconfig_deploys_with_safe_defaults():
    import tomllib

    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert config["default"]["global"]["parameters"]["stack_name"] == "rtrec"
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert "region" not in deploy and "region" not in config["default"]["global"]["parameters"]
    overrides = dict(pair.split("=", 1) for pair in deploy["parameter_overrides"].split())
    assert set(overrides) <= set(TEMPLATE["Parameters"])
    for name, value in overrides.items():
        allowed = TEMPLATE["Parameters"][name].get("AllowedValues")
        assert allowed is None or value in [str(v) for v in allowed], name


@pytest.mark.parametrize(
    "parameters",
    [{}, EXTERNAL_IDP, {"EnableSnapStart": "true", "AlarmTopicArn": "arn:aws:sns:us-east-1:1:t"}],
    ids=["defaults", "external-idp", "snapstart-and-topic"],
)
def test_the_translated_template_passes_cfn_lint(parameters):
    # `sam validate --lint` lints the template before the transform; dependency cycles through what SAM
    # generates (an API alarm as a rollback trigger of a function behind that API) only show after it.
    import cfnlint.api

    translated = json.dumps(translate(parameters))
    matches = cfnlint.api.lint(translated, config=cfnlint.api.ManualArgs(regions=["us-east-1"]))
    errors = [f"{m.rule.id}: {m.message}" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_the_local_stack_reads_the_routes_scopes_and_skips_the_inline_trigger():
    from infra.local.template import Template

    local = Template(REPO_ROOT / "template.yaml")
    routes = {(r.method, r.path): r for r in local.http_routes()}
    user_routes = {key: r.required_scopes for key, r in routes.items() if key not in ADMIN_ROUTES}
    assert user_routes == {k: (v,) for k, v in SCOPES.items()}
    # Behind the stack's own pool the local API does not enforce them: its stand-in for Cognito mints
    # direct sign-in tokens, which get their scopes from the trigger in AWS.
    assert all(r.scopes == () for r in routes.values())
    assert {f.logical_id for f in local.functions()} == set(API_FUNCTIONS)


# ---------- event archive (Firehose -> S3, Glue tables for Athena) ----------


def test_archive_bucket_is_encrypted_private_unversioned_retained_and_moves_to_cheaper_storage():
    bucket = under()["Resources"]["ArchiveBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    properties = bucket["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert "VersioningConfiguration" not in properties  # versioning off
    (rule,) = properties["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
    assert "ExpirationInDays" not in rule  # kept until deleted, unless ArchiveExpirationDays says otherwise
    parameters = {"ArchiveInfrequentAccessDays": "60", "ArchiveExpirationDays": "400"}
    (rule,) = under(parameters)["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"][0]["TransitionInDays"] == "60" and rule["ExpirationInDays"] == "400"
    (statement,) = under()["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_firehose_reads_the_event_stream_into_gzip_json_lines_partitioned_by_kind_and_day(cfn):
    from infra.local.archive import ERRORS_PREFIX, EVENTS_PREFIX, FILE_EXTENSION, KINDS

    stream = cfn["ArchiveDeliveryStream"]["Properties"]
    assert stream["DeliveryStreamType"] == "KinesisStreamAsSource"
    source = stream["KinesisStreamSourceConfiguration"]
    assert source["KinesisStreamARN"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    assert source["RoleARN"] == {"Fn::GetAtt": ["ArchiveDeliveryRole", "Arn"]}
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}
    assert s3["CompressionFormat"] == "GZIP" and s3["FileExtension"] == FILE_EXTENSION
    # The local archive (infra/local/archive.py) writes the same layout: prefix, kinds, error prefix.
    assert (
        s3["Prefix"]
        == f"{EVENTS_PREFIX}/kind=!{{partitionKeyFromQuery:kind}}/dt=!{{partitionKeyFromQuery:dt}}/"
    )
    assert s3["ErrorOutputPrefix"].startswith("errors/!{firehose:error-output-type}/dt=")
    assert ERRORS_PREFIX.startswith("errors/")
    assert s3["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert s3["BufferingHints"]["SizeInMBs"] >= 64  # the minimum with dynamic partitioning
    processors = {p["Type"]: {q["ParameterName"]: q["ParameterValue"] for q in p["Parameters"]}
                  for p in s3["ProcessingConfiguration"]["Processors"]}  # fmt: skip
    extraction = processors["MetadataExtraction"]
    assert extraction["JsonParsingEngine"] == "JQ-1.6"
    query = extraction["MetadataExtractionQuery"]
    assert (
        all(f'"{kind}"' in query for kind in KINDS)
        and 'strftime("%Y-%m-%d")' in query
        and ".ts / 1000" in query
    )
    assert processors["AppendDelimiterToRecord"]["Delimiter"] == "\\n"  # one record per line
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True


def test_firehose_role_reads_only_the_stream_and_writes_only_the_archive(cfn):
    trust = cfn["ArchiveDeliveryRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "firehose.amazonaws.com"}]
    assert trust[0]["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in cfn["ArchiveDeliveryRole"]["Properties"]
    policy = cfn["ArchiveDeliveryPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "ArchiveDeliveryRole"}]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Action"]) for s in statements.values())
    read = statements["ReadTheEventStream"]
    assert set(read["Action"]) == {
        "kinesis:DescribeStream",
        "kinesis:GetShardIterator",
        "kinesis:GetRecords",
        "kinesis:ListShards",
    }
    assert read["Resource"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    write = statements["WriteArchiveObjects"]
    assert "s3:PutObject" in write["Action"] and "s3:DeleteObject" not in write["Action"]
    assert write["Resource"] == [
        {"Fn::Sub": "${ArchiveBucket.Arn}/events/*"},
        {"Fn::Sub": "${ArchiveBucket.Arn}/errors/*"},
    ]
    assert statements["ListTheArchiveBucket"]["Resource"] == {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}
    assert statements["LogDeliveryErrors"]["Resource"] == {"Fn::GetAtt": ["ArchiveDeliveryLogGroup", "Arn"]}
    # The stream uses the AWS managed key aws/kinesis: readers need no kms statement.
    assert cfn["EventStream"]["Properties"]["StreamEncryption"]["KeyId"] == "alias/aws/kinesis"
    assert not any(a.startswith("kms:") for s in statements.values() for a in s["Action"])


def test_glue_table_matches_the_stream_record_with_projected_kind_and_day_partitions(cfn):
    from rtrec.events import Event

    database = cfn["ArchiveDatabase"]["Properties"]["DatabaseInput"]
    assert "archive" in json.dumps(database["Name"])
    table = cfn["ArchiveEventsTable"]["Properties"]
    assert table["DatabaseName"] == {"Ref": "ArchiveDatabase"}
    inputs = table["TableInput"]
    assert inputs["Name"] == "events"  # the view name dataio.archive gives the archive in DuckDB
    assert [(k["Name"], k["Type"]) for k in inputs["PartitionKeys"]] == [("kind", "string"), ("dt", "string")]
    columns = {c["Name"]: c["Type"] for c in inputs["StorageDescriptor"]["Columns"]}
    record = Event(
        user_id="u", event_id="e", item_id="i", type="rating", ts=1, value=4.0, session_id="s",
        recommendation_id="r", context={"k": "v"},
    ).to_record()  # fmt: skip
    assert set(columns) == set(record)
    assert (
        columns["ts"] == "bigint"
        and columns["value"] == "double"
        and columns["context"] == "map<string,string>"
    )
    assert (
        inputs["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        == "org.openx.data.jsonserde.JsonSerDe"
    )
    assert inputs["StorageDescriptor"]["Location"] == {"Fn::Sub": "s3://${ArchiveBucket}/events/"}
    projection = inputs["Parameters"]
    assert projection["projection.enabled"] == "true"
    assert projection["projection.kind.values"] == "event,impression"
    assert (projection["projection.dt.type"], projection["projection.dt.format"]) == ("date", "yyyy-MM-dd")
    assert projection["storage.location.template"] == {
        "Fn::Sub": "s3://${ArchiveBucket}/events/kind=${!kind}/dt=${!dt}/"
    }
    items = cfn["ArchiveItemsTable"]["Properties"]["TableInput"]
    assert items["Name"] == "items"
    assert {c["Name"]: c["Type"] for c in items["StorageDescriptor"]["Columns"]}[
        "categories"
    ] == "array<string>"


def test_archive_alarms_and_outputs(cfn):
    delivery = {"Ref": "ArchiveDeliveryStream"}
    behind = cfn[_alarm_on(cfn, "AWS/Firehose", "KinesisMillisBehindLatest", DeliveryStreamName=delivery)]
    assert behind["Properties"]["Threshold"] < 24 * 3600 * 1000  # well before the stream's retention
    failed = cfn[_alarm_on(cfn, "AWS/Firehose", "DeliveryToS3.Success", DeliveryStreamName=delivery)]
    assert failed["Properties"]["ComparisonOperator"] == "LessThanThreshold"
    outputs = translate()["Outputs"]
    assert outputs["ArchiveBucketName"]["Value"] == {"Ref": "ArchiveBucket"}
    assert outputs["ArchiveDeliveryStreamName"]["Value"] == {"Ref": "ArchiveDeliveryStream"}
    assert outputs["ArchiveDatabaseName"]["Value"] == {"Ref": "ArchiveDatabase"}


# ---------- model registry ----------

MODEL_BUCKET_NAME = {
    "Fn::Join": ["-", ["rtrec-models", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]]
}
MODEL_POINTER_NAME = {"Fn::Sub": "/${AWS::StackName}/model-pointer"}


def test_model_registry_bucket_pointer_and_the_functions_that_follow_it(cfn):
    bucket = cfn["ModelBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    p = bucket["Properties"]
    assert p["BucketName"] == MODEL_BUCKET_NAME
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert all(p["PublicAccessBlockConfiguration"].values()) and len(p["PublicAccessBlockConfiguration"]) == 4
    pointer = cfn["ModelPointer"]["Properties"]
    assert cfn["ModelPointer"]["Type"] == "AWS::SSM::Parameter"
    assert pointer["Type"] == "String" and pointer["Name"] == MODEL_POINTER_NAME
    assert pointer["Value"] == "bootstrap"  # rtrec.registry.BOOTSTRAP: the ModelLayer
    # The names reach the functions as values, not references: the local stack makes neither resource.
    for function in ("RecommendFunction", "IngestFunction"):
        variables = cfn[function]["Properties"]["Environment"]["Variables"]
        assert variables["MODEL_BUCKET"] == MODEL_BUCKET_NAME, function
        assert variables["MODEL_POINTER"] == MODEL_POINTER_NAME, function
        assert 1 <= int(variables["MODEL_POINTER_MAX_AGE_S"]) <= 3600, function
        assert variables["MODEL_DIR"] == "/opt/model", function  # the bootstrap
    for function in ("CollectFunction", "CatalogFunction"):
        assert "MODEL_POINTER" not in cfn[function]["Properties"]["Environment"]["Variables"], function
    outputs = translate()["Outputs"]
    assert outputs["ModelBucketName"]["Value"] == {"Ref": "ModelBucket"}
    assert outputs["ModelPointerName"]["Value"] == {"Ref": "ModelPointer"}


def test_only_recommend_and_ingest_may_read_model_versions_and_the_pointer(cfn):
    grants: dict[str, set] = {}
    for policy in of_type(cfn, "AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                for action in _actions(statement):
                    grants.setdefault(role["Ref"], set()).add((action, json.dumps(statement["Resource"])))
    for role in cfn:
        for statement in _statements(cfn[role]) if cfn[role]["Type"] == "AWS::IAM::Role" else ():
            for action in _actions(statement):
                grants.setdefault(role, set()).add((action, json.dumps(statement["Resource"])))
    pointer_arn = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ModelPointer}"
    registry = {
        ("s3:GetObject", json.dumps({"Fn::Sub": "${ModelBucket.Arn}/models/*"})),
        ("ssm:GetParameter", json.dumps({"Fn::Sub": pointer_arn})),
    }
    readers = {role for role, granted in grants.items() if granted & registry}
    # RetrainRole: the scheduled retraining job (test_the_retraining_role_reads_the_archive_...).
    assert readers == {"RecommendFunctionRole", "IngestFunctionRole", "RetrainRole"}
    assert grants["RecommendFunctionRole"] >= registry and grants["IngestFunctionRole"] >= registry
    # Nothing else in the stack writes the registry: publishing and rollback are operator actions.
    on_registry = {
        g for role, granted in grants.items() if role != "RetrainRole" for g in granted if "Model" in g[1]
    }
    assert on_registry == registry


# ---------- impressions and experiments ----------


def test_impression_lines_reach_the_archive_through_one_subscription_and_firehose(cfn):
    from rtrec.impressions import FILTER_PATTERN

    subscriptions = of_type(cfn, "AWS::Logs::SubscriptionFilter")
    on_recommend = {
        rid: s
        for rid, s in subscriptions.items()
        if s["Properties"]["LogGroupName"] == {"Ref": "RecommendLogGroup"}
    }
    assert set(on_recommend) >= {"ImpressionSubscription"}
    assert len(on_recommend) <= 2  # CloudWatch Logs allows two per log group
    subscription = cfn["ImpressionSubscription"]["Properties"]
    assert subscription["FilterPattern"] == FILTER_PATTERN
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["ImpressionDeliveryStream", "Arn"]}
    assert subscription["RoleArn"] == {"Fn::GetAtt": ["ImpressionSubscriptionRole", "Arn"]}
    stream = cfn["ImpressionDeliveryStream"]["Properties"]
    assert stream["DeliveryStreamType"] == "DirectPut"
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}
    assert s3["Prefix"].startswith("events/kind=impression/dt=")  # the archive's layout, the Glue table's
    assert s3["ErrorOutputPrefix"].startswith("errors/impressions/")
    assert s3["CompressionFormat"] == "GZIP" and s3["FileExtension"] == ".jsonl.gz"
    processors = {p["Type"]: p.get("Parameters", []) for p in s3["ProcessingConfiguration"]["Processors"]}
    assert list(processors) == ["Decompression", "CloudWatchLogProcessing", "AppendDelimiterToRecord"]
    assert {"ParameterName": "DataMessageExtraction", "ParameterValue": "true"} in processors[
        "CloudWatchLogProcessing"
    ]
    # Logs may put records into this stream only; Firehose may write under the impression prefixes only.
    trust = cfn["ImpressionSubscriptionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "logs.amazonaws.com"}]
    (put,) = cfn["ImpressionSubscriptionPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert set(put["Action"]) == {"firehose:PutRecord", "firehose:PutRecordBatch"}
    assert put["Resource"] == {"Fn::GetAtt": ["ImpressionDeliveryStream", "Arn"]}
    statements = cfn["ImpressionDeliveryPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (write,) = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert write["Resource"] == [
        {"Fn::Sub": "${ArchiveBucket.Arn}/events/kind=impression/*"},
        {"Fn::Sub": "${ArchiveBucket.Arn}/errors/impressions/*"},
    ]
    assert translate()["Outputs"]["ImpressionDeliveryStreamName"]["Value"] == {
        "Ref": "ImpressionDeliveryStream"
    }


def test_glue_impressions_table_matches_the_impression_record_and_the_duckdb_view(cfn):
    from evaluation.experiment_report import IMPRESSION_COLUMNS
    from rtrec.impressions import impression_record

    table = cfn["ArchiveImpressionsTable"]["Properties"]["TableInput"]
    assert table["Name"] == "impressions"
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert list(columns) == list(IMPRESSION_COLUMNS)
    record = impression_record("r", "u", "GET /v1/recommendations", "v", [("i", "model")], 1)
    assert set(columns) <= set(record)
    assert columns["items"] == "array<array<string>>" and columns["ts"] == "bigint"
    assert table["StorageDescriptor"]["Location"] == {
        "Fn::Sub": "s3://${ArchiveBucket}/events/kind=impression/"
    }
    assert [p["Name"] for p in table["PartitionKeys"]] == ["dt"]
    assert table["Parameters"]["projection.enabled"] == "true"


def test_the_experiment_parameter_is_read_by_recommend_only(cfn):
    parameter = cfn["ExperimentParameter"]["Properties"]
    assert parameter["Type"] == "String" and parameter["Value"] == "none"
    variables = cfn["RecommendFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["EXPERIMENT_PARAMETER"] == {"Fn::Sub": "/${AWS::StackName}/experiment"}
    assert parameter["Name"] == variables["EXPERIMENT_PARAMETER"]
    assert 1 <= int(variables["EXPERIMENT_MAX_AGE_S"]) <= 3600
    policy = cfn["ExperimentReadPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "RecommendFunctionRole"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["ssm:GetParameter"]
    arn = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ExperimentParameter}"
    assert statement["Resource"] == {"Fn::Sub": arn}
    readers = [
        p["Properties"]["Roles"]
        for p in of_type(cfn, "AWS::IAM::Policy").values()
        if "ExperimentParameter" in json.dumps(p["Properties"]["PolicyDocument"])
    ]
    assert readers == [[{"Ref": "RecommendFunctionRole"}]]


# -- retraining (model_build.retrain on a schedule) ----------------------------------------------------
RETRAIN = {"RetrainSourceLocation": "my-builds/rtrec/source.zip"}
RETRAIN_RESOURCES = {
    "RetrainLogGroup",
    "RetrainRole",
    "RetrainProject",
    "RetrainScheduleRole",
    "RetrainScheduleRule",
}


def test_the_retraining_job_exists_only_with_a_source_bundle_and_its_schedule_follows_the_flag():
    assert not RETRAIN_RESOURCES & set(under()["Resources"])
    assert not {"RetrainProjectName", "RetrainScheduleName"} & set(under()["Outputs"])
    made = under(RETRAIN)
    assert set(made["Resources"]) >= RETRAIN_RESOURCES
    rule = made["Resources"]["RetrainScheduleRule"]["Properties"]
    assert rule["State"] == "ENABLED" and rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["RetrainProject", "Arn"]}
    assert target["RoleArn"] == {"Fn::GetAtt": ["RetrainScheduleRole", "Arn"]}
    off = under({**RETRAIN, "RetrainEnabled": "false", "RetrainSchedule": "rate(6 hours)"})
    rule = off["Resources"]["RetrainScheduleRule"]["Properties"]
    assert rule["State"] == "DISABLED" and rule["ScheduleExpression"] == "rate(6 hours)"
    assert made["Outputs"]["RetrainProjectName"]["Value"] == {"Ref": "RetrainProject"}


def test_the_retraining_job_runs_make_retrain_on_the_archive_and_publishes_to_the_registry():
    project = under(RETRAIN)["Resources"]["RetrainProject"]["Properties"]
    assert (
        project["Source"]["Type"] == "S3"
        and project["Source"]["Location"] == RETRAIN["RetrainSourceLocation"]
    )
    assert project["Artifacts"] == {"Type": "NO_ARTIFACTS"}
    assert project["ServiceRole"] == {"Fn::GetAtt": ["RetrainRole", "Arn"]}
    assert 30 <= project["TimeoutInMinutes"] <= 480  # a training run, not a Lambda's 15 minutes
    environment = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert environment["ARCHIVE_BUCKET"] == {"Ref": "ArchiveBucket"}
    assert environment["MODEL_BUCKET"] == {"Ref": "ModelBucket"}
    assert environment["MODEL_POINTER"] == {"Ref": "ModelPointer"}
    assert (str(environment["RETRAIN_DAYS"]), str(environment["RETRAIN_EPOCHS"])) == ("30", "8")
    assert environment["RETRAIN_TOLERANCE"] == "0.005"
    buildspec = yaml_parse(project["Source"]["BuildSpec"])
    assert buildspec["phases"]["install"]["runtime-versions"]["python"] == 3.11  # the dev venv's Python
    (command,) = buildspec["phases"]["build"]["commands"]
    assert "make retrain" in command and 'ARCHIVE="s3://${ARCHIVE_BUCKET}"' in command
    for flag in (
        "--bucket ${MODEL_BUCKET}",
        "--pointer ${MODEL_POINTER}",
        "--tolerance ${RETRAIN_TOLERANCE}",
    ):
        assert flag in command
    assert "exit" not in command  # make's own exit status (2 on any failure), see the next test
    assert project["LogsConfig"]["CloudWatchLogs"]["GroupName"] == {"Ref": "RetrainLogGroup"}


def test_the_retraining_role_reads_the_archive_writes_the_registry_and_nothing_else():
    resources = under(RETRAIN)["Resources"]
    role = resources["RetrainRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role
    grants = {
        (action, json.dumps(s["Resource"], sort_keys=True), json.dumps(s.get("Condition"), sort_keys=True))
        for s in _statements(resources["RetrainRole"])
        for action in _actions(s)
    }

    def sub(text: str) -> str:
        return json.dumps({"Fn::Sub": text})

    def arn(name: str) -> str:
        return json.dumps({"Fn::GetAtt": [name, "Arn"]})

    pointer = sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ModelPointer}")
    archive_prefixes = {"StringLike": {"s3:prefix": ["events/kind=event/*", "catalog/items/*"]}}
    registry_prefixes = {"StringLike": {"s3:prefix": ["models/*", "retrain-runs/*"]}}
    none = json.dumps(None)
    assert grants == {
        ("s3:GetObject", sub("arn:${AWS::Partition}:s3:::${RetrainSourceLocation}"), none),
        ("s3:GetObjectVersion", sub("arn:${AWS::Partition}:s3:::${RetrainSourceLocation}"), none),
        ("s3:ListBucket", arn("ArchiveBucket"), json.dumps(archive_prefixes, sort_keys=True)),
        (
            "s3:GetObject",
            json.dumps(
                [
                    {"Fn::Sub": "${ArchiveBucket.Arn}/events/kind=event/*"},
                    {"Fn::Sub": "${ArchiveBucket.Arn}/catalog/items/*"},
                ]
            ),
            none,
        ),
        ("s3:ListBucket", arn("ModelBucket"), json.dumps(registry_prefixes, sort_keys=True)),
        ("s3:GetObject", sub("${ModelBucket.Arn}/models/*"), none),
        ("s3:PutObject", sub("${ModelBucket.Arn}/models/*"), none),
        ("s3:PutObject", sub("${ModelBucket.Arn}/retrain-runs/*"), none),
        ("ssm:GetParameter", pointer, none),
        ("ssm:PutParameter", pointer, none),
        ("logs:CreateLogStream", arn("RetrainLogGroup"), none),
        ("logs:PutLogEvents", arn("RetrainLogGroup"), none),
    }
    schedule = resources["RetrainScheduleRole"]["Properties"]
    (trust,) = schedule["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    (statement,) = _statements(resources["RetrainScheduleRole"])
    assert statement["Action"] == "codebuild:StartBuild"
    assert statement["Resource"] == {"Fn::GetAtt": ["RetrainProject", "Arn"]}


# ---------- trending popularity ----------


def test_trending_table_is_on_demand_with_ttl_and_a_sharded_key(cfn):
    properties = cfn["TrendingTable"]["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "item_id", "KeyType": "RANGE"},
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_trending_writer_and_readers_agree_and_are_bounded(cfn):
    """Ingest writes the buckets recommend reads: the same width, window and shards, within bounds."""
    from rtrec.settings import IngestSettings, RecommendSettings

    shared = ("TRENDING_BUCKET_S", "TRENDING_WINDOW_BUCKETS", "TRENDING_SHARDS")
    ingest = cfn["IngestFunction"]["Properties"]["Environment"]["Variables"]
    recommend = cfn["RecommendFunction"]["Properties"]["Environment"]["Variables"]
    assert ingest["TRENDING_TABLE"] == recommend["TRENDING_TABLE"] == {"Ref": "TrendingTable"}
    assert {k: ingest[k] for k in shared} == {k: recommend[k] for k in shared}
    base = {"USER_STATE_TABLE": "t", "DEAD_LETTER_QUEUE_URL": "q", "MODEL_DIR": "/opt/model"}
    literal = {k: v for k, v in recommend.items() if isinstance(v, str) and k.startswith("TRENDING_")}
    on_recommend = RecommendSettings.from_env({**base, **literal, "TRENDING_TABLE": "x"}).trending
    literal = {k: v for k, v in ingest.items() if isinstance(v, str) and k.startswith("TRENDING_")}
    on_ingest = IngestSettings.from_env({**base, **literal, "TRENDING_TABLE": "x"}).trending
    assert on_recommend is not None and on_ingest is not None
    assert on_recommend.config == on_ingest.config  # ingest reads the half-life and prior it never sets


def test_ingest_only_adds_to_and_recommend_only_queries_the_trending_table(cfn):
    trending = {"Fn::GetAtt": ["TrendingTable", "Arn"]}
    for function, action in (
        ("IngestFunction", "dynamodb:UpdateItem"),
        ("RecommendFunction", "dynamodb:Query"),
    ):
        granted = [
            a for s in _statements(cfn[f"{function}Role"]) if s["Resource"] == trending for a in _actions(s)
        ]
        assert granted == [action], function


def test_the_fail_safe_paths_have_one_alarm_over_every_metric_they_emit(cfn):
    """A model that will not load, a rejected experiment, trending that cannot be written or read: each keeps
    the last good one serving (no error, no degraded answer), so only these metrics say it is stuck."""
    alarm = cfn["FailSafePathsAlarm"]["Properties"]
    stats = {q["Id"]: q["MetricStat"] for q in alarm["Metrics"] if "MetricStat" in q}
    (total,) = [q for q in alarm["Metrics"] if q.get("ReturnData")]
    assert set(re.findall(r"[a-z]+", total["Expression"].removeprefix("SUM"))) == set(stats)
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    names = set()
    for stat in stats.values():
        metric = stat["Metric"]
        assert metric["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
        assert metric["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
        names.add(metric["MetricName"])
    handlers = "".join(p.read_text() for p in (REPO_ROOT / "functions").glob("*/app.py"))
    emitted = {
        n
        for n in re.findall(r'"([A-Z][A-Za-z]+(?:Failures|Rejected))"', handlers)
        if n.startswith(("Model", "Experiment", "Trending"))
    }
    assert names == emitted, (names, emitted)
    assert alarm["Threshold"] == 0 and alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("retrain_exit", "make_succeeds"), [(0, True), (3, True), (4, True), (1, False), (2, False)]
)
def test_make_retrain_ends_well_on_a_refusal_or_too_little_data(tmp_path, retrain_exit, make_succeeds):
    """The scheduled job runs `make retrain`, and make exits 2 whatever the recipe's code: the target itself
    must turn model_build.retrain's outcomes (published, refused by the gate, no data) into success."""
    import subprocess

    from model_build import retrain

    assert (retrain.EXIT_PUBLISHED, retrain.EXIT_REFUSED, retrain.EXIT_NO_DATA) == (0, 3, 4)
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexit {retrain_exit}\n")
    fake.chmod(0o755)
    # `venv` is satisfied (`-o`): this runs only the retrain recipe, with the stand-in interpreter.
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", "venv", "retrain", f"PY={fake}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert (result.returncode == 0) is make_succeeds, result.stdout + result.stderr
