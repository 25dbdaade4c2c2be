"""Embedding backends: the seam between sketches and the retrieval environment (see the README)."""
