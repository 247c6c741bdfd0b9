"""Scorers: code scorers now, LLM judges next."""
