"""Research studies: one-off measurements behind docs/results.md and
docs/representations.md, each run as `python -m experiments.NAME` (see its
docstring). The tested tools live in `airstreams_jax/tools/`."""
