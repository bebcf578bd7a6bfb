"""Self-training on a completed search: unlabelled image sets and Noisy Student jobs."""
