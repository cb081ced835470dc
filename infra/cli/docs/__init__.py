"""``meshgate docs``: the edge's OpenAPI document and the mesh's AsyncAPI document, both
generated from the policies."""
