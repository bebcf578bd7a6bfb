"""Text classification: text datasets, the fast n-gram proxy model and its trainer."""
