"""Showcases on top of the local stack: `make demo` (MovieLens) and `make demo DATA=...` (any catalog)."""
