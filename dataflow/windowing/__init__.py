"""Windowing spans into traces."""
