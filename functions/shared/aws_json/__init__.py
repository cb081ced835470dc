"""AWS's JSON protocol without botocore where it costs (issue 15): SigV4 signing (``sigv4``,
pure), DynamoDB's binary attribute values on the wire (``attribute_values``, pure), one
JSON-protocol service over kept-alive HTTP connections (``json_client``), the way to a
service found in the environment as botocore would find it (``direct_route``, pure), a
DynamoDB client whose item calls take that path (``dynamodb_client``), and the Secrets
Manager and SSM reads of the functions (``clients``).

Why: a botocore ``PutItem`` costs ~0.7 ms of the caller's CPU (its event hooks, request
objects, urllib3 and the ``email`` header parser), more than the emulator takes to answer;
a worker with its required durable idempotency store makes two per request. And importing
botocore's session and client was ~45 ms of every gateway cold start, for a handful of
calls whose endpoint, region and credentials a Lambda's environment already gives.
"""
