"""How `main` finds its place in a run: the flags win, else the cluster JAX
detects in the environment (a simulated SLURM job here), else one process.

The two-process run that such an environment forms is in test_multihost.
"""

import pytest

from airstreams_jax import cluster
from tests.simulated_clusters import slurm_environment

# Every variable that one of JAX's cluster classes looks for (jax/_src/
# clusters): none may leak in from the machine that runs the tests.
_CLUSTER_VARIABLES = (
    'SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID',
    'SLURM_LOCALID', 'SLURM_STEP_NUM_NODES', 'OMPI_MCA_orte_hnp_uri',
    'KUBERNETES_SERVICE_HOST', 'TPU_WORKER_HOSTNAMES',
    'TPU_PROCESS_ADDRESSES', 'JAX_COORDINATOR_PORT')


@pytest.fixture
def no_cluster(monkeypatch):
  for name in _CLUSTER_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


def test_without_cluster_variables_a_run_is_one_process(no_cluster):
  assert cluster.detect() is None
  processes = cluster.resolve(False, None, 1, 0)
  assert processes == cluster.Processes()
  assert not processes.multi_process
  cluster.initialize(processes)  # Joins nothing, starts no service.


def test_a_slurm_task_finds_its_place_and_the_first_node(no_cluster):
  for name, value in slurm_environment(4242, 1, 4, 'node[007-010],gpu1'
                                       ).items():
    no_cluster.setenv(name, value)
  processes = cluster.resolve(False, None, 1, 0)
  # SLURM's port: the job id folded into the ephemeral range, as JAX does.
  port = 4242 % 4096 + 61440
  assert processes == cluster.Processes('SLURM', 1, 4, f'node007:{port}')
  assert cluster.describe(processes) == (
      f'SLURM: process 1 of 4, coordinator node007:{port}')
  # JAX's own override of the port is honoured (both read the same one).
  no_cluster.setenv('JAX_COORDINATOR_PORT', '1234')
  assert cluster.detect().coordinator == 'node007:1234'


def test_a_one_task_slurm_job_stays_one_process(no_cluster):
  for name, value in slurm_environment(7, 0, 1, 'node1').items():
    no_cluster.setenv(name, value)
  processes = cluster.resolve(False, None, 1, 0)
  assert processes.source == 'SLURM' and not processes.multi_process
  assert cluster.describe(processes) == (
      'SLURM: one process; not joining a multi-host run.')


def test_the_flags_win_over_the_cluster(no_cluster):
  for name, value in slurm_environment(7, 3, 4, 'node1').items():
    no_cluster.setenv(name, value)
  assert cluster.resolve(True, 'host:99', 2, 1) == cluster.Processes(
      'flags', 1, 2, 'host:99')
  # --num_processes=1 given: one process, the cluster ignored.
  assert cluster.resolve(True, None, 1, 0) == cluster.Processes()


@pytest.mark.parametrize('coordinator, process_id, message', [
    (None, 0, '--num_processes > 1 needs --coordinator_address (host:port '
     'of process 0).'),
    ('host:99', 2, '--process_id=2 must be in [0, 2).'),
])
def test_flags_that_cannot_form_a_run_are_one_line(coordinator, process_id,
                                                   message):
  with pytest.raises(ValueError) as raised:
    cluster.resolve(True, coordinator, 2, process_id)
  assert str(raised.value) == message
