"""Compressed checkpoints of a finished search: ONNX, int8 ONNX and pruned weights.

`search.compress.queue` holds the jobs' queue (an Optuna study; no torch), `variants` the
three transformations, `measure` the side-by-side accuracy and latency, `build.make_variant`
one variant with its card, and `jobs` the worker's side.
"""
