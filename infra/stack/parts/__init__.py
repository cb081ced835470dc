"""The features that add to the stack, one module each; each returns a ``StackPart``
(``infra.stack.model``)."""
