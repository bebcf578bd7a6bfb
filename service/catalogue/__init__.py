"""Catalogue API."""
