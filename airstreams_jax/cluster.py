"""Which processes form this run: the flags, or the cluster it was started in.

`--coordinator_address/--num_processes/--process_id` (or their upper-case
environment variables) win when given. Without them, JAX's own cluster
detection is asked: under SLURM, Open MPI (mpirun), a Cloud TPU pod slice
(every worker runs the same command) or a Kubernetes job, each process of the
job finds its place in the run by itself, and `jax.distributed.initialize()`
with no arguments joins it. Without either, the run is one process.
"""

import dataclasses
import os
from typing import Optional

import jax
# JAX has no public "would initialize() find a cluster?" query; its
# detection classes are what initialize() itself runs, so asking them gives
# the same answer it will act on.
from jax._src import clusters as jax_clusters

# JAX's class names -> how users call these clusters.
_NAMES = {
    'SlurmCluster': 'SLURM',
    'OmpiCluster': 'Open MPI',
    'GceTpuCluster': 'Cloud TPU VM',
    'GkeTpuCluster': 'GKE TPU',
    'K8sCluster': 'Kubernetes',
}
# Seconds a TPU worker waits for the coordinator's host name to resolve
# (jax.distributed.initialize's own default).
_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Processes:
  """This process's place in the run.

  source: 'flags', a cluster's name (e.g. 'SLURM'), or '' for a run of one
    process that joins nobody.
  """
  source: str = ''
  process_id: int = 0
  num_processes: int = 1
  coordinator: str = ''

  @property
  def multi_process(self) -> bool:
    return self.num_processes > 1


def detect() -> Optional[Processes]:
  """The cluster JAX finds in this process's environment, or None.

  The same classes, in the same order, as `jax.distributed.initialize()`
  with no arguments; opt-in ones (mpi4py) are skipped, as it skips them.
  """
  for env in jax_clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if env.opt_in_only_method or not env.is_env_present():
      continue
    coordinator = env.get_coordinator_address(
        timeout_secs=_TIMEOUT_S,
        override_coordinator_port=os.environ.get('JAX_COORDINATOR_PORT'))
    return Processes(_NAMES.get(env.__name__, env.name),
                     env.get_process_id(), env.get_process_count(),
                     coordinator)
  return None


def resolve(flags_given: bool, coordinator_address: Optional[str],
            num_processes: int, process_id: int) -> Processes:
  """The flags when given (even --num_processes=1: a way to opt out of
  detection), else the detected cluster, else one process.

  Raises:
    ValueError: flags that cannot form a run (one line naming the fix).
  """
  if flags_given:
    if num_processes <= 1:
      return Processes()
    if not coordinator_address:
      raise ValueError('--num_processes > 1 needs --coordinator_address '
                       '(host:port of process 0).')
    if not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id={process_id} must be in '
                       f'[0, {num_processes}).')
    return Processes('flags', process_id, num_processes, coordinator_address)
  found = detect()
  return found or Processes()


def describe(p: Processes) -> str:
  """One line: 'SLURM: process 1 of 4, coordinator host:port'."""
  if not p.multi_process:
    where = f'{p.source}: ' if p.source else ''
    return f'{where}one process; not joining a multi-host run.'
  return (f'{p.source}: process {p.process_id} of {p.num_processes}, '
          f'coordinator {p.coordinator}')


def initialize(p: Processes) -> None:
  """Joins the run `p` describes (before any JAX computation)."""
  if not p.multi_process:
    return
  if p.source == 'flags':
    jax.distributed.initialize(p.coordinator, p.num_processes, p.process_id)
  else:
    # No arguments: JAX detects the same cluster again and also picks what
    # `detect` does not report (a GPU process's local device under SLURM).
    jax.distributed.initialize()
