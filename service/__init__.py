"""augsearch service package."""
