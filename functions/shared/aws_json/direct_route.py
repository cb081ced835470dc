"""Where and as whom a JSON-protocol call goes when no botocore session is made (pure).

A function's AWS calls need botocore's session only to find three things: the credentials,
the region and the endpoint. In a Lambda (and in this project's local workers) all three are
in the environment, and the session costs ~45 ms of every cold start to import (issue 15).
``direct_route`` resolves them as botocore would, in botocore's order (an explicit argument,
then the environment), and answers ``None`` wherever botocore could decide differently: a
shared config file or profile, FIPS or dual-stack endpoints, a proxy, a partition other than
the commercial, China and GovCloud ones, a ``verify`` setting. ``None`` means: make the
botocore client, as before.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import quote

from functions.shared.aws_json.sigv4 import Credentials

# botocore's service ids in AWS_ENDPOINT_URL_<ID> (spaces as underscores, upper case)
ENDPOINT_ENV_IDS: Final = {"dynamodb": "DYNAMODB", "secretsmanager": "SECRETS_MANAGER",
                           "ssm": "SSM"}
_COMMERCIAL = re.compile(r"^(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d+$")
_GOVCLOUD = re.compile(r"^us-gov-[a-z]+-\d+$")
_CHINA = re.compile(r"^cn-[a-z]+-\d+$")
_TRUE = ("1", "true", "yes")


class DirectRoute(NamedTuple):
    endpoint_url: str
    region: str
    credentials: Credentials
    ca_bundle: str | None  # AWS_CA_BUNDLE, else the default trust store


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in _TRUE


def default_endpoint(service: str, region: str) -> str | None:
    """``https://{service}.{region}.amazonaws.com`` (``.com.cn`` in China), or None for a
    region of another partition."""
    if _COMMERCIAL.match(region) or _GOVCLOUD.match(region):
        return f"https://{service}.{region}.amazonaws.com"
    if _CHINA.match(region):
        return f"https://{service}.{region}.amazonaws.com.cn"
    return None


def credentials_of(args: Mapping[str, Any], env: Mapping[str, str]) -> Credentials | None:
    """The explicit keys, else the environment's (botocore's first two providers)."""
    access, secret = args.get("aws_access_key_id"), args.get("aws_secret_access_key")
    if access or secret:
        return Credentials(str(access), str(secret), args.get("aws_session_token")) \
            if access and secret else None
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not (access and secret):
        return None
    token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None
    return Credentials(access, secret, token)


def endpoint_of(service: str, region: str, args: Mapping[str, Any], env: Mapping[str, str],
                *, config_file: bool) -> str | None:
    explicit = args.get("endpoint_url")
    if explicit:
        return str(explicit)
    if not _flag(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        configured = env.get(f"AWS_ENDPOINT_URL_{ENDPOINT_ENV_IDS[service]}") or env.get(
            "AWS_ENDPOINT_URL")
        if configured:
            return configured
        if config_file:  # its profile may name an endpoint for the service
            return None
    if _flag(env, "AWS_USE_FIPS_ENDPOINT") or _flag(env, "AWS_USE_DUALSTACK_ENDPOINT"):
        return None
    return default_endpoint(service, region)


def direct_route(service: str, args: Mapping[str, Any], env: Mapping[str, str], *,
                 config_file: bool, proxies: bool) -> DirectRoute | None:
    """``service`` (a key of ``ENDPOINT_ENV_IDS``) called with botocore's client arguments
    ``args``, in ``env``; ``config_file``: a shared AWS config file exists; ``proxies``: the
    environment names a proxy."""
    if proxies or "verify" in args or env.get("AWS_PROFILE"):
        return None
    config = args.get("config")
    if config is not None and getattr(config, "proxies", None):
        return None
    region = args.get("region_name") or env.get("AWS_DEFAULT_REGION")
    credentials = credentials_of(args, env)
    if not region or credentials is None:
        return None
    endpoint = endpoint_of(service, str(region), args, env, config_file=config_file)
    if endpoint is None or not endpoint.startswith(("http://", "https://")):
        return None
    return DirectRoute(endpoint, str(region), credentials, env.get("AWS_CA_BUNDLE") or None)


def environment_route(service: str, args: Mapping[str, Any] | None = None,
                      env: Mapping[str, str] | None = None) -> DirectRoute | None:
    """``direct_route`` in this process: its environment, its config file, its proxies."""
    import urllib.request

    source = os.environ if env is None else env
    config_path = source.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    return direct_route(service, args or {}, source,
                        config_file=os.path.exists(config_path),
                        proxies=bool(urllib.request.getproxies()))


def recursion_header(env: Mapping[str, str]) -> dict[str, str]:
    """The header botocore adds to every call made inside a Lambda invocation, by which AWS
    detects a function that triggers itself (``add_recursion_detection_header``)."""
    trace_id = env.get("_X_AMZN_TRACE_ID")
    if "AWS_LAMBDA_FUNCTION_NAME" in env and trace_id:
        return {"X-Amzn-Trace-Id": quote(trace_id, safe="-=;:+&[]{}\"',")}
    return {}


def default_ca_file(route: DirectRoute) -> str:
    """The trust store for an HTTPS endpoint: ``AWS_CA_BUNDLE``, else botocore's default
    (certifi's, else the one botocore ships)."""
    if route.ca_bundle:
        return route.ca_bundle
    try:
        import certifi
    except ImportError:
        from importlib.resources import files

        return str(files("botocore").joinpath("cacert.pem"))
    return str(certifi.where())
