"""The embedded AWS: a moto server on loopback, provisioned from the template's resources."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from infra.local.template import ACCOUNT_ID, STACK_NAME, Resolver, Template

log = logging.getLogger("local.aws")

# CloudFormation properties that CreateTable takes under the same name.
_TABLE_CREATE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "TableClass",
    "DeletionProtectionEnabled",
    "Tags",
)
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "RedrivePolicy",
)
# Resources the local stack does not create but whose Ref/GetAtt the template uses.
_COGNITO_POOL_ID_SUFFIX = "_local"


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


@dataclass
class PhysicalResources:
    """Local names/ARNs/URLs of the template's resources, by logical id."""

    region: str
    values: dict[str, dict[str | None, Any]] = field(default_factory=dict)

    def attribute(self, logical_id: str, attribute: str | None) -> Any:
        """What Ref (attribute None) or Fn::GetAtt returns for a resource."""
        if logical_id not in self.values:
            # Resources with no local counterpart (roles, layers, the API itself) still get a
            # stable, recognisable value so that references to them resolve.
            arn = f"arn:aws:local:{self.region}:{ACCOUNT_ID}:{logical_id}"
            return arn if attribute == "Arn" else f"{STACK_NAME}-{logical_id}"
        by_attr = self.values[logical_id]
        if attribute not in by_attr:
            raise KeyError(f"{logical_id} has no attribute {attribute!r} locally")
        return by_attr[attribute]

    def by_arn(self, arn: str) -> str | None:
        """Logical id of the resource with this ARN."""
        for logical_id, attrs in self.values.items():
            if attrs.get("Arn") == arn:
                return logical_id
        return None


def provision(template: Template, endpoint_url: str, region: str) -> tuple[PhysicalResources, Resolver]:
    """Create the template's streams, tables and queues in the local AWS.

    Names are resolved from the template when it sets them, else derived from the
    logical id as CloudFormation would. Returns the physical values and a resolver
    for the rest of the template.
    """
    physical = PhysicalResources(region=region)
    resolver = Resolver(template, physical.attribute, region)
    _register_identity(template, physical, region)
    session = boto3.session.Session(
        region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    clients = {
        name: session.client(name, endpoint_url=endpoint_url) for name in ("dynamodb", "kinesis", "sqs")
    }
    for rid, res in template.of_type("AWS::SQS::Queue").items():
        _create_queue(clients["sqs"], rid, resolver(res.get("Properties", {})), physical, region)
    for rid, res in template.of_type("AWS::Kinesis::Stream").items():
        _create_stream(clients["kinesis"], rid, resolver(res.get("Properties", {})), physical, region)
    for rid, res in template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable").items():
        props = resolver(res.get("Properties", {}))
        if res["Type"] == "AWS::Serverless::SimpleTable":
            props = _simple_table_as_table(props)
        _create_table(clients["dynamodb"], rid, props, physical, region)
    return physical, resolver


def _name(props: dict, key: str, rid: str) -> str:
    value = props.get(key)
    return value if isinstance(value, str) and value else f"{STACK_NAME}-{rid}"


def _register_identity(template: Template, physical: PhysicalResources, region: str) -> None:
    """Give Cognito resources the ids a real pool has, so issuer URLs resolve to their usual shape."""
    for rid in template.of_type("AWS::Cognito::UserPool"):
        pool_id = f"{region}{_COGNITO_POOL_ID_SUFFIX}{rid.lower()}"
        physical.values[rid] = {
            None: pool_id,
            "Arn": f"arn:aws:cognito-idp:{region}:{ACCOUNT_ID}:userpool/{pool_id}",
            "ProviderName": f"cognito-idp.{region}.amazonaws.com/{pool_id}",
            "ProviderURL": f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
            "UserPoolId": pool_id,
        }
    for rid in template.of_type("AWS::Cognito::UserPoolClient"):
        physical.values[rid] = {None: f"local{rid.lower()}", "ClientId": f"local{rid.lower()}"}


def _create_queue(sqs, rid: str, props: dict, physical: PhysicalResources, region: str) -> None:
    name = _name(props, "QueueName", rid)
    attributes = {}
    for key in _QUEUE_ATTRIBUTES:
        if key in props:
            attributes[key] = _attribute_text(props[key])
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{name}"
    physical.values[rid] = {None: url, "Arn": arn, "QueueName": name, "QueueUrl": url}
    log.info("queue %s -> %s", rid, url)


def _attribute_text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _create_stream(kinesis, rid: str, props: dict, physical: PhysicalResources, region: str) -> None:
    name = _name(props, "Name", rid)
    mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    else:
        kinesis.create_stream(StreamName=name, ShardCount=int(props.get("ShardCount", 1)))
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    encryption = props.get("StreamEncryption")
    if encryption:
        kinesis.start_stream_encryption(
            StreamName=name, EncryptionType=encryption["EncryptionType"], KeyId=str(encryption["KeyId"])
        )
    arn = f"arn:aws:kinesis:{region}:{ACCOUNT_ID}:stream/{name}"
    physical.values[rid] = {None: name, "Arn": arn}
    log.info("stream %s -> %s (%s)", rid, name, mode)


def _create_table(dynamodb, rid: str, props: dict, physical: PhysicalResources, region: str) -> None:
    name = _name(props, "TableName", rid)
    request = {key: props[key] for key in _TABLE_CREATE_KEYS if key in props}
    default_billing = "PROVISIONED" if "ProvisionedThroughput" in props else "PAY_PER_REQUEST"
    request.setdefault("BillingMode", default_billing)
    stream_spec = props.get("StreamSpecification")
    if stream_spec:
        request["StreamSpecification"] = {"StreamEnabled": True, **stream_spec}
    sse = props.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled", False)),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
        }
    description = dynamodb.create_table(TableName=name, **request)["TableDescription"]
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    physical.values[rid] = {
        None: name,
        "Arn": description["TableArn"],
        "StreamArn": description.get("LatestStreamArn"),
    }
    log.info("table %s -> %s", rid, name)


def _simple_table_as_table(props: dict) -> dict:
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    type_code = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
    out = {
        "TableName": props.get("TableName"),
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": type_code}],
    }
    if props.get("ProvisionedThroughput"):
        out["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    if props.get("SSESpecification"):
        out["SSESpecification"] = props["SSESpecification"]
    return out
