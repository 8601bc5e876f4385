"""Experiment configs.

Run one with `python -m airstreams_jax.main --config=configs/<name>.py`.
"""
