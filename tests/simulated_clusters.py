"""A cluster's environment as its launcher sets it, for the tests of
cluster detection (no real cluster here)."""


def slurm_environment(job_id: int, process_id: int, num_processes: int,
                      nodes: str) -> dict:
  """The variables srun sets for one task, as JAX's SlurmCluster reads them."""
  return {'SLURM_JOB_ID': str(job_id), 'SLURM_STEP_NODELIST': nodes,
          'SLURM_NTASKS': str(num_processes),
          'SLURM_PROCID': str(process_id),
          # One task per node in these tests: each the first on its node.
          'SLURM_LOCALID': '0',
          'SLURM_STEP_NUM_NODES': str(num_processes)}
