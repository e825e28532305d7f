"""The embedded AWS: moto, with the template deployed into it by moto's own CloudFormation.

`deploy` translates the SAM template with samtranslator (as `sam deploy` does), keeps the
resource types the local stack uses and moto's CloudFormation can create, and calls
CreateStack: moto makes the table, stream, queue, roles and functions (with their resolved
environments), and resolves the event source mappings' settings into stack outputs. What it
reads back is a `Deployment`.

What moto does not do, and the local stack does instead: Lambda layers (dropped by moto; the
runtime puts their sources on the import path), the HTTP API (not created; `http_api.py`), the
Cognito pool (not supported; `auth.py` stands in for it), invoking functions and polling
mappings (`runtime.py`, `poller.py`). TimeToLiveSpecification is accepted but nothing expires.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from samtranslator.translator.transform import transform

from infra.local.template import ACCOUNT_ID, STACK_NAME, Template

log = logging.getLogger("local.aws")

# What the local stack needs from the template and moto's CloudFormation creates. Everything else
# (alarms, dashboard, CodeDeploy, aliases and versions, permissions, policies, the API, Cognito) is
# left out; a kept resource that referred to one would make CreateStack fail and say which.
# Event source mappings are left out too: moto hands every record put on a mapped stream to its own
# Lambda at once, through Docker. Their properties go into stack outputs, for moto to resolve.
LOCAL_RESOURCE_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::Kinesis::Stream",
        "AWS::SQS::Queue",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::Lambda::Function",
    }
)
# moto stores the code; it never runs it (the local runtime imports the real handler instead).
_PLACEHOLDER_CODE = {"ZipFile": "def handler(event, context):\n    return None\n"}
_MAPPING_OUTPUT_PREFIX = "LocalMappingSetting"


class MotoServer:
    """moto in server mode on 127.0.0.1 (a free port unless one is given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.endpoint_url = ""

    def start(self) -> str:
        # werkzeug logs every request at INFO; moto's own chatter is not useful here.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        log.info("moto server on %s", self.endpoint_url)
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()
        log.info("moto server stopped")


@dataclass(frozen=True)
class DeployedFunction:
    """A function as moto's Lambda describes it after CreateStack (environment resolved, as text)."""

    logical_id: str
    name: str
    arn: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]


@dataclass(frozen=True)
class KinesisSource:
    """A Kinesis event source mapping of a function, with the settings Lambda honours."""

    function_id: str
    stream_arn: str
    batch_size: int = 100
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    max_retries: int = -1  # -1 = until the record expires
    max_record_age_s: int = -1
    on_failure_arn: str | None = None
    starting_position: str = "LATEST"

    @classmethod
    def from_mapping(cls, function_id: str, mapping: dict[str, str]) -> KinesisSource:
        """The settings of an AWS::Lambda::EventSourceMapping as moto resolved them (text; absent: defaults).

        Nested properties have dotted names (`DestinationConfig.OnFailure.Destination`); lists are
        comma-joined.
        """
        return cls(
            function_id=function_id,
            stream_arn=mapping["EventSourceArn"],
            batch_size=int(mapping.get("BatchSize", 100)),
            batching_window_s=float(mapping.get("MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in mapping.get("FunctionResponseTypes", ""),
            bisect_on_error=mapping.get("BisectBatchOnFunctionError", "false").lower() == "true",
            max_retries=int(mapping.get("MaximumRetryAttempts", -1)),
            max_record_age_s=int(mapping.get("MaximumRecordAgeInSeconds", -1)),
            on_failure_arn=mapping.get("DestinationConfig.OnFailure.Destination"),
            starting_position=mapping.get("StartingPosition", "LATEST"),
        )

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":stream/", 1)[-1]


@dataclass
class Deployment:
    """What CreateStack made, by logical id: physical ids (what Ref returns), functions and mappings."""

    region: str
    types: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    functions: dict[str, DeployedFunction] = field(default_factory=dict)
    mappings: dict[str, dict[str, str]] = field(default_factory=dict)  # resolved properties, by logical id

    def attribute(self, logical_id: str, attribute: str | None = None) -> Any:
        """What Ref (attribute None) returns; resources moto did not make get stand-ins for Ref and GetAtt."""
        if logical_id in self.refs and attribute is None:
            return self.refs[logical_id]
        if logical_id in self.refs:
            raise KeyError(f"{logical_id}.{attribute} is not read back from the local stack")
        return stand_in(self.types.get(logical_id, ""), logical_id, attribute, self.region)

    def kinesis_sources(self) -> list[KinesisSource]:
        """The enabled Kinesis mappings of the deployed functions."""
        by_name = {f.name: f.logical_id for f in self.functions.values()}
        return [
            KinesisSource.from_mapping(by_name[mapping["FunctionName"]], mapping)
            for mapping in self.mappings.values()
            if mapping.get("FunctionName") in by_name
            and ":kinesis:" in mapping.get("EventSourceArn", "")
            and mapping.get("Enabled", "true").lower() == "true"
        ]


def stand_in(resource_type: str, logical_id: str, attribute: str | None, region: str) -> str:
    """A stable value for a resource with no local counterpart, so references to it still resolve.

    A Cognito pool gets the id shape of a real one, so issuer URLs built from it look as in AWS.
    """
    if resource_type == "AWS::Cognito::UserPool":
        pool_id = f"{region}_local{logical_id.lower()}"
        return {
            None: pool_id,
            "UserPoolId": pool_id,
            "Arn": f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{pool_id}",
            "ProviderName": f"cognito-idp.{region}.amazonaws.com/{pool_id}",
            "ProviderURL": f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        }.get(attribute, pool_id)
    if resource_type == "AWS::Cognito::UserPoolClient":
        return f"local{logical_id.lower()}"
    if attribute == "Arn":
        return f"arn:aws:local:{region}:{ACCOUNT_ID}:{logical_id}"
    return f"{STACK_NAME}-{logical_id}"


def local_cloudformation(template: Template) -> tuple[dict[str, Any], dict[str, str]]:
    """The template as `sam deploy` would submit it, cut down to what moto creates for the local stack.

    Each event source mapping's properties become outputs (described by `[logical id, property]`),
    its function alias replaced by the alias's function. Returns the CloudFormation template and
    the left-out resources' types by logical id.
    """
    document = copy.deepcopy(template.document)
    for resource in document.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):  # `sam package` would upload these to S3
                properties[key] = f"s3://local/{properties[key]}"
    # The translator warns about feature toggles it has no configuration for: noise here.
    logging.getLogger("samtranslator.feature_toggle.feature_toggle").setLevel(logging.ERROR)
    translated = transform(document, {}, _NoManagedPolicies())
    every = translated["Resources"]
    kept = {rid: res for rid, res in every.items() if res["Type"] in LOCAL_RESOURCE_TYPES}
    left_out = {rid: res["Type"] for rid, res in every.items() if rid not in kept}
    for resource in kept.values():
        resource.pop("UpdatePolicy", None)
        properties = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Lambda::Function":
            properties["Code"] = dict(_PLACEHOLDER_CODE)
            properties.pop("Layers", None)
        depends = resource.get("DependsOn")
        if depends is not None:
            names = [depends] if isinstance(depends, str) else depends
            resource["DependsOn"] = [name for name in names if name in kept]
    translated["Resources"] = kept
    translated["Outputs"] = {}
    for rid, resource in every.items():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = dict(resource.get("Properties", {}))
            target = every.get(_ref_name(properties.get("FunctionName")) or "", {})
            if target.get("Type") == "AWS::Lambda::Alias":
                properties["FunctionName"] = target["Properties"]["FunctionName"]
            for name, value in _flattened(properties):
                output = {"Value": value, "Description": json.dumps([rid, name])}
                if "Condition" in resource:
                    output["Condition"] = resource["Condition"]
                translated["Outputs"][f"{_MAPPING_OUTPUT_PREFIX}{len(translated['Outputs'])}"] = output
    return translated, left_out


def _flattened(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every setting; lists of text joined with commas (outputs are text)."""
    for name, value in properties.items():
        if isinstance(value, dict) and not any(key == "Ref" or key.startswith("Fn::") for key in value):
            yield from _flattened(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            yield f"{prefix}{name}", {"Fn::Join": [",", value]}
        else:  # an intrinsic, or a literal moto takes as text only
            yield f"{prefix}{name}", value if isinstance(value, dict | str) else _as_text(value)


class _NoManagedPolicies:
    """samtranslator's lookup of AWS managed policy names, offline: nothing to look up in IAM here."""

    def load(self) -> dict:
        return {}


def _ref_name(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def deploy(template: Template, session: boto3.session.Session, endpoint_url: str | None = None) -> Deployment:
    """Create the template's local resources with CreateStack in moto and read back what was made.

    `endpoint_url` is the moto server's URL, or None inside moto's in-memory `mock_aws`.
    """
    region = session.region_name

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url)

    body, left_out = local_cloudformation(template)
    cloudformation = client("cloudformation")
    cloudformation.create_stack(
        StackName=STACK_NAME,
        TemplateBody=json.dumps(body),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"moto could not create the local stack: {stack.get('StackStatusReason')}")
    deployment = Deployment(region=region, types=dict(left_out))
    for resource in cloudformation.describe_stack_resources(StackName=STACK_NAME)["StackResources"]:
        if "LogicalResourceId" not in resource:  # moto lists a resource whose Condition is false, without ids
            continue
        rid = resource["LogicalResourceId"]
        deployment.types[rid] = resource["ResourceType"]
        deployment.refs[rid] = resource["PhysicalResourceId"]

    lambda_client = client("lambda")
    for rid, name in deployment.refs.items():
        if deployment.types[rid] != "AWS::Lambda::Function":
            continue
        config = lambda_client.get_function_configuration(FunctionName=name)
        variables = config.get("Environment", {}).get("Variables", {})
        deployment.functions[rid] = DeployedFunction(
            logical_id=rid,
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            handler=config["Handler"],
            timeout_s=int(config.get("Timeout", 3)),
            memory_mb=int(config.get("MemorySize", 128)),
            environment={k: _as_text(v) for k, v in variables.items()},
        )
    for output in stack.get("Outputs", []):
        if output["OutputKey"].startswith(_MAPPING_OUTPUT_PREFIX):
            rid, name = json.loads(output["Description"])
            deployment.mappings.setdefault(rid, {})[name] = _as_text(output["OutputValue"])
    log.info(
        "CreateStack made %d resources in moto; left to the local stack or out: %d",
        len(deployment.refs),
        len(left_out),
    )
    return deployment


def _as_text(value: Any) -> str:
    """An environment value as Lambda hands it over: a string (booleans as CloudFormation writes them)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
