"""``make attack``: hostile input against the mesh (real broker) and the edge (real HTTP
through the emulated API Gateway), plus a fuzzer over the envelope parser.

Every case is counted: tried, refused (parked on ``mesh.quarantine`` with a reason, refused by
the broker, answered 4xx by the edge, or refused by admission for the fuzzer) and whether it
reached a handler (the victim worker's handler for the mesh, a marker on a request topic for
the edge). Each suite also sends one genuine control that must reach its handler, so a zero
means the probe was looking. Only 127.0.0.1 is ever targeted.
"""
