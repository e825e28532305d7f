"""scripts/get_token.py against moto: the client id from the stack's outputs, USER_PASSWORD_AUTH, and the
first sign-in of an administrator-created user (NEW_PASSWORD_REQUIRED)."""

from __future__ import annotations

import json

import boto3
import jwt
import pytest

from scripts import get_token

USERNAME = "alice@example.com"
TEMPORARY = "Temporary-Passw0rd"
PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture
def pool(aws):
    """A pool and app client shaped like the stack's, a stack whose outputs name them, and one user."""
    cognito = boto3.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="rtrec", UsernameAttributes=["email"])["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="app",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=USERNAME,
        TemporaryPassword=TEMPORARY,
        UserAttributes=[{"Name": "email", "Value": USERNAME}],
        MessageAction="SUPPRESS",
    )
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"UserPoolId": {"Value": pool_id}, "UserPoolClientId": {"Value": client_id}},
    }
    boto3.client("cloudformation").create_stack(StackName="rtrec", TemplateBody=json.dumps(template))
    return {"pool_id": pool_id, "client_id": client_id, "cognito": cognito}


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_stack_outputs_name_the_app_client(pool):
    outputs = get_token.stack_outputs(boto3.client("cloudformation"), "rtrec")
    assert outputs["UserPoolClientId"] == pool["client_id"]


def test_first_sign_in_sets_the_new_password_and_prints_an_access_token(pool, monkeypatch, capsys):
    monkeypatch.setenv("RTREC_PASSWORD", TEMPORARY)
    assert get_token.main(["--username", USERNAME, "--new-password", PASSWORD], boto3.session.Session()) == 0
    token = capsys.readouterr().out.strip()
    claims = _claims(token)
    assert claims["token_use"] == "access"  # the API's routes check scopes: only access tokens carry them
    assert claims["client_id"] == pool["client_id"]
    # The new password is now the password.
    assert _claims(get_token.access_token(pool["cognito"], pool["client_id"], USERNAME, PASSWORD))["sub"]


def test_first_sign_in_without_a_new_password_says_what_to_do(pool, monkeypatch, capsys):
    monkeypatch.setenv("RTREC_PASSWORD", TEMPORARY)
    assert get_token.main(["--username", USERNAME], boto3.session.Session()) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "--new-password" in captured.err


def test_wrong_password_fails_without_a_token(pool, monkeypatch, capsys):
    pool["cognito"].admin_set_user_password(
        UserPoolId=pool["pool_id"], Username=USERNAME, Password=PASSWORD, Permanent=True
    )
    monkeypatch.setenv("RTREC_PASSWORD", "not-the-password")
    assert get_token.main(["--username", USERNAME], boto3.session.Session()) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "NotAuthorizedException" in captured.err
    assert "not-the-password" not in captured.err


def test_a_stack_without_its_own_user_pool_is_refused(aws, capsys):
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}, "Outputs": {"ApiUrl": {"Value": "x"}}}
    boto3.client("cloudformation").create_stack(StackName="external", TemplateBody=json.dumps(template))
    with pytest.raises(SystemExit):
        get_token.main(["--username", USERNAME, "--stack-name", "external"], boto3.session.Session())
    assert "JwtIssuerUrl" in capsys.readouterr().err
