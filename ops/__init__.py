"""augsearch ops package."""
