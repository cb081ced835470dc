"""infra.keys.dev_issuer on the real emulator: the JWKS is served to anonymous HTTP clients at the
policy's URL, minted tokens verify through UrlJwks, and a rotation is picked up by the
gateway's JwksCache (one refresh on the unknown key id) while older tokens keep verifying.

The rotation runs against a policy of its own (a fresh bucket, a temporary key folder), so
the running stack's issuer keys and published key set are left alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from functions.gateway.auth.jwks import JwksCache, UrlJwks, parse_jwks
from functions.gateway.auth.jwt_bearer import JwtVerifier
from infra.deploy.aws import client
from infra.keys import dev_issuer
from infra.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def s3(infra_settings: Settings) -> Any:
    s3 = client(infra_settings, "s3")
    try:
        s3.list_buckets()
    except (BotoCoreError, ClientError) as exc:
        pytest.fail(f"no S3 at {infra_settings.endpoint_url} ({exc}): run 'make test' or "
                    "'.venv/bin/meshgate up' first")
    return s3


@pytest.fixture
def own_issuer(infra_settings: Settings, s3: Any, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose policy points the issuer at a fresh bucket; the bucket is removed."""
    bucket = f"itest-issuer-{uuid.uuid4().hex[:10]}"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "mesh.yaml").write_text(f"""edge:
  jwt:
    issuer: https://issuer.itest.local
    audience: [itest]
    algorithms: [ES256]
    jwks_url: {infra_settings.endpoint_url}/{bucket}/keys/jwks.json
""")
    monkeypatch.setenv("MESHGATE_LOCAL_DIR", str(tmp_path / "local"))
    yield infra_settings.model_copy(update={"root": tmp_path})
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)


def test_the_stack_policy_url_serves_the_signing_key_anonymously(
        infra_settings: Settings) -> None:
    lines: list[str] = []
    config = dev_issuer.ensure(infra_settings, lines.append)
    assert config is not None, lines
    assert config.jwks_url == "http://127.0.0.1:4566/meshgate-local-issuer/jwks.json"
    served = parse_jwks(dev_issuer.fetch_anonymously(config.jwks_url))
    assert dev_issuer.signing_key(infra_settings).kid in served.kids
    assert dev_issuer.ensure(infra_settings, lines.append) == config
    assert lines[-1].endswith(f"unchanged at {config.jwks_url}")


async def test_rotation_on_the_emulator_old_tokens_verify_new_kid_refreshes(
        own_issuer: Settings, s3: Any) -> None:
    lines: list[str] = []
    config = dev_issuer.ensure(own_issuer, lines.append)
    assert config is not None, lines
    head = s3.head_object(Bucket=config.bucket, Key="keys/jwks.json")
    assert head["ContentType"] == "application/json"
    document = json.loads(dev_issuer.fetch_anonymously(config.jwks_url))
    first = dev_issuer.signing_key(own_issuer)
    assert [jwk["kid"] for jwk in document["keys"]] == [first.kid]

    cache = JwksCache(UrlJwks(config.jwks_url), ttl_s=300, min_refresh_interval_s=0)
    verifier = JwtVerifier(cache, issuer=config.issuer, audience=config.audience,
                           algorithms=["ES256"])
    old = dev_issuer.mint(own_issuer, {"sub": "before", "scope": "catalog:read"})
    assert (await verifier.verify(old)).scopes == {"catalog:read"}
    assert cache.fetches == 1

    second = dev_issuer.rotate(own_issuer, lines.append)
    new = dev_issuer.mint(own_issuer, {"sub": "after"})
    assert jwt.get_unverified_header(new)["kid"] == second.kid != first.kid
    assert (await verifier.verify(new)).subject == "after"  # unknown kid: one refresh
    assert cache.fetches == 2
    assert (await verifier.verify(old)).subject == "before"  # the previous key is kept
    assert cache.fetches == 2
    served = parse_jwks(dev_issuer.fetch_anonymously(config.jwks_url))
    assert served.kids == {first.kid, second.kid}
