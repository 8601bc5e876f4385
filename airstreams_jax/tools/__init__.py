"""Tested tools the README points to: the benchmark and its PyTorch twin, fault
injection, the ablation tables and sweep summaries, and the video-folder maker.

Each is a command: `python -m airstreams_jax.tools.NAME --help`."""
