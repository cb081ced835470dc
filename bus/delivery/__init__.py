"""Delivery: retries, retry topics, dead letters, applying each message once, and safe offset
commits."""
