"""Reporting: static figures (matplotlib, logged to W&B as images) and the hand-in's helpers."""
