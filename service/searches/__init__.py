"""Searches: launch, follow, cancel, resume; their trials."""
