"""Normalisers: one module per source system, each registering its payload kinds (see `base`)."""
