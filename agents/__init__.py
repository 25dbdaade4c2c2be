"""RL agents for on-the-fly retrieval (see the README)."""
