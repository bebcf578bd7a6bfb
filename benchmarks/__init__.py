"""Reproducible benchmarks; each module prints its figures and records them in docs/benchmarks.md."""
