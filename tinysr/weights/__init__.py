"""Weights trained by tinysr itself, shipped with the package (``docs/results.md`` says how each was made)."""
