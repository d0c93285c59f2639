"""Cogent CLI: keep Klaviyo in step with what the warehouse actually did."""

__version__ = "0.1.0"
