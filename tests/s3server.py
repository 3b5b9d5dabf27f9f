"""Placeholder replaced by the loopback S3 server fixture."""
