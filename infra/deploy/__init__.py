"""Packaging and deploying the stack: the Lambda zips, the boto3 adapter with its change-set deploy,
the deploy pipeline, and the deployed gateway's environment."""
