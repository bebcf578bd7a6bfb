"""The trial trainer, split by concern; :mod:`search.trainer` is its public face."""
