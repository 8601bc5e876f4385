"""Experiment configs: `python -m airstreams_jax.main --config=configs/<name>.py`."""
