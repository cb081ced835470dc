"""AWS's JSON protocol without botocore on the hot path (issue 15): SigV4 signing
(``sigv4``, pure), DynamoDB's binary attribute values on the wire (``attribute_values``,
pure), and a DynamoDB client that sends the stores' item calls over kept-alive HTTP
connections and leaves everything else to botocore (``dynamodb_client``).

Why: a botocore ``PutItem`` costs ~0.7 ms of the caller's CPU (its event hooks, request
objects, urllib3 and the ``email`` header parser), more than the emulator takes to answer;
a worker with its required durable idempotency store makes two per request.
"""
