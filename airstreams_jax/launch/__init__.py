"""Sweeps: sweep files (`sweep`), the local launcher (`local`), the record of
an experiment (`record`) and XManager submission (`xm_launcher`); the command
line is `python -m airstreams_jax.launch`."""
