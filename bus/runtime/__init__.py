"""The mesh at run time: the client that calls (and its reply listener), the worker that serves
requests, the subscriber that consumes events, and the Lambda event source."""
