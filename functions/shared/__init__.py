"""Helpers shared by the Lambda functions (adapters that ``bus`` may not import, e.g. boto3)."""
