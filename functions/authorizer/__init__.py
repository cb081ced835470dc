"""The Lambda authorizer: the edge's credential checks (JWT bearer or API key) as an API
Gateway HTTP API v2 REQUEST authorizer with simple responses, the alternative deployment in
which API Gateway checks credentials before the gateway function runs.

It reuses the gateway's authentication building blocks (``functions.gateway.auth``), which
are the edge's, not the gateway app's: it imports nothing else of the gateway.
"""
