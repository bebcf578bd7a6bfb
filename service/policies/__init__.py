"""Policies API."""
