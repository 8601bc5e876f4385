"""Sweep definitions for `python -m airstreams_jax.launch --sweep=configs/sweeps/NAME.py`."""
