"""Operator tools that work through a running proxy's S3 API: bulk re-wrap and in-place encryption."""
