"""Weights trained by tinysr itself, shipped with the package (see the README for how each was made)."""
