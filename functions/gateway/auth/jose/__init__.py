"""JOSE for a verifier: compact JWS tokens, JWK public keys and JWT claims (RFC 7515-7519,
8037), on ``cryptography`` alone.

The gateway and the authorizer verify bearer tokens with these modules instead of PyJWT:
PyJWT's ``algorithms`` module imports ``cryptography.x509`` (certificate loading this edge
never uses), about 17 ms of every cold start (docs/decisions.md, "JWTs verified without
PyJWT"). Each module is pure and does one step (base64url is the mesh's own strict codec,
``bus.security.b64url``):

- ``keys``: a JWK's public verification key (RSA, EC, OKP), or ``None``;
- ``compact``: a compact JWS split and its protected header read, before any key is chosen;
- ``signatures``: one algorithm's signature check with one key;
- ``claims``: the registered claims (``exp``, ``nbf``, ``iat``, ``iss``, ``aud``, ``sub``,
  ``jti``) checked against a verifier's rules.

Errors are the gateway's auth errors (``functions.gateway.auth.errors``), with the reasons
the verifier has always given.
"""
