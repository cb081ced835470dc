"""Lambda functions and demo services built on the ``bus`` mesh client."""
