"""Checkpoints API."""
