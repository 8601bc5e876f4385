"""Sweeps: sweep files (`sweep`), the local launcher (`local`), the record of
an experiment (`record`), XManager submission (`xm_launcher`) and Cloud TPU
VM slices through gcloud (`tpu_vm`); the command line is
`python -m airstreams_jax.launch`."""
