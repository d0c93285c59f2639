"""Klaviyo: the API client, its rate limiter and the official spec it is checked against."""
