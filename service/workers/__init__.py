"""Workers API."""
