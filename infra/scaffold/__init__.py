"""``meshgate new service NAME``: a user's own service, its policy entries and its test."""
