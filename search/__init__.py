"""augsearch search package."""
