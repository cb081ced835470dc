"""``direct_route``: the endpoint, region and credentials botocore would use, found in the
environment, or None wherever botocore could decide otherwise (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.shared.aws_json.direct_route import (
    DirectRoute,
    default_ca_file,
    default_endpoint,
    direct_route,
    recursion_header,
)
from functions.shared.aws_json.sigv4 import Credentials
from tests.support import aws_environment

LAMBDA_ENV = {"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
              "AWS_SESSION_TOKEN": "token", "AWS_DEFAULT_REGION": "eu-west-1",
              "AWS_REGION": "eu-west-1"}


def route(service: str = "dynamodb", args: dict[str, Any] | None = None,
          env: dict[str, str] | None = None, *, config_file: bool = False,
          proxies: bool = False) -> DirectRoute | None:
    return direct_route(service, args or {}, LAMBDA_ENV if env is None else env,
                        config_file=config_file, proxies=proxies)


def test_a_lambda_s_environment_gives_the_regional_endpoint_and_its_credentials() -> None:
    assert route() == DirectRoute("https://dynamodb.eu-west-1.amazonaws.com", "eu-west-1",
                                  Credentials("ASIAEXAMPLE", "secret", "token"), None)
    assert route("secretsmanager").endpoint_url == (  # type: ignore[union-attr]
        "https://secretsmanager.eu-west-1.amazonaws.com")


def test_partitions() -> None:
    assert default_endpoint("ssm", "cn-north-1") == "https://ssm.cn-north-1.amazonaws.com.cn"
    assert default_endpoint("ssm", "us-gov-west-1") == "https://ssm.us-gov-west-1.amazonaws.com"
    assert default_endpoint("ssm", "us-iso-east-1") is None  # another partition: botocore's
    assert default_endpoint("ssm", "eusc-de-east-1") is None


def test_explicit_arguments_over_the_environment() -> None:
    args = {"endpoint_url": "http://127.0.0.1:4566", "region_name": "us-east-1",
            "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    found = route(args=args, env={**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://other:1"})
    assert found == DirectRoute("http://127.0.0.1:4566", "us-east-1",
                                Credentials("test", "test", None), None)


def test_the_service_s_endpoint_variable_over_the_global_one_unless_ignored() -> None:
    env = {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://all:1",
           "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://secrets:2"}
    assert route("secretsmanager", env=env).endpoint_url == "http://secrets:2"  # type: ignore[union-attr]
    assert route("ssm", env=env).endpoint_url == "http://all:1"  # type: ignore[union-attr]
    ignored = {**env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}
    assert route("ssm", env=ignored).endpoint_url == (  # type: ignore[union-attr]
        "https://ssm.eu-west-1.amazonaws.com")


def test_a_security_token_variable_of_old() -> None:
    env = {**LAMBDA_ENV, "AWS_SESSION_TOKEN": "", "AWS_SECURITY_TOKEN": "old"}
    assert route(env=env).credentials.token == "old"  # type: ignore[union-attr]


@pytest.mark.parametrize("why", [
    {"env": {k: v for k, v in LAMBDA_ENV.items() if k != "AWS_SECRET_ACCESS_KEY"}},
    {"env": {k: v for k, v in LAMBDA_ENV.items() if k != "AWS_DEFAULT_REGION"}},
    {"args": {"aws_access_key_id": "only the id"}},
    {"env": {**LAMBDA_ENV, "AWS_PROFILE": "dev"}},
    {"env": {**LAMBDA_ENV, "AWS_USE_FIPS_ENDPOINT": "true"}},
    {"env": {**LAMBDA_ENV, "AWS_USE_DUALSTACK_ENDPOINT": "1"}},
    {"args": {"verify": False}},
    {"proxies": True},
    {"config_file": True},  # a profile there may name the service's endpoint
    {"env": {**LAMBDA_ENV, "AWS_DEFAULT_REGION": "us-iso-east-1"}},
    {"args": {"endpoint_url": "unix:///socket"}},
], ids=["no secret", "no region (AWS_REGION is not botocore's)", "partial keys", "a profile",
        "fips", "dual-stack", "verify", "a proxy", "a config file", "another partition",
        "not http"])
def test_botocore_decides_where_it_could_decide_otherwise(why: dict[str, Any]) -> None:
    assert route(args=why.get("args"), env=why.get("env"),
                 config_file=why.get("config_file", False),
                 proxies=why.get("proxies", False)) is None


def test_a_config_file_does_not_matter_once_the_endpoint_is_configured() -> None:
    env = {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    assert route(env=env, config_file=True) is not None


def test_a_config_with_proxies_keeps_botocore() -> None:
    class Config:
        def __init__(self) -> None:
            self.proxies = {"https": "http://proxy:3128"}

    assert route(args={"config": Config()}) is None


def test_the_recursion_header_inside_a_lambda_only() -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    inside = {"AWS_LAMBDA_FUNCTION_NAME": "gw", "_X_AMZN_TRACE_ID": trace}
    assert recursion_header(inside) == {"X-Amzn-Trace-Id": trace}
    assert recursion_header({"_X_AMZN_TRACE_ID": trace}) == {}
    assert recursion_header({**inside, "_X_AMZN_TRACE_ID": "a b"}) == {
        "X-Amzn-Trace-Id": "a%20b"}


def test_the_trust_store() -> None:
    found = route()
    assert found is not None
    assert default_ca_file(found).endswith(".pem")
    bundle = DirectRoute(found.endpoint_url, found.region, found.credentials, "/etc/ca.pem")
    assert default_ca_file(bundle) == "/etc/ca.pem"


@pytest.mark.parametrize("env", [
    LAMBDA_ENV,
    {**LAMBDA_ENV, "AWS_DEFAULT_REGION": "cn-north-1"},
    {**LAMBDA_ENV, "AWS_DEFAULT_REGION": "us-gov-west-1"},
    {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
    {**LAMBDA_ENV, "AWS_ENDPOINT_URL": "http://all:1", "AWS_ENDPOINT_URL_SSM": "http://ssm:2"},
], ids=["lambda", "china", "govcloud", "emulator", "per service"])
@pytest.mark.parametrize("service", ["dynamodb", "secretsmanager", "ssm"])
def test_botocore_resolves_the_same_route(service: str, env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Any) -> None:
    """The rules above, checked against botocore itself in the same environment."""
    import botocore.session

    aws_environment(monkeypatch, env, home=str(tmp_path))  # no shared config file
    found = route(service, env=env)
    assert found is not None
    client = botocore.session.get_session().create_client(service)
    credentials = client._request_signer._credentials.get_frozen_credentials()  # type: ignore[attr-defined]
    assert (found.endpoint_url, found.region) == (client.meta.endpoint_url,
                                                  client.meta.region_name)
    assert found.credentials == Credentials(credentials.access_key, credentials.secret_key,
                                            credentials.token)
