"""Datasets: registration, statistics, sample grids."""
