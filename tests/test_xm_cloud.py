"""XManager on the cloud (airstreams_jax/launch/xm_cloud.py): the jobs a dry
run would submit to Vertex AI or Kubernetes, built with XManager's own
executors and translations. Nothing is submitted, no image is built."""

import os

import pytest

from airstreams_jax import errors
from airstreams_jax.launch import sweep
from airstreams_jax.launch import tpu_vm
from airstreams_jax.launch import xm_cloud

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = 'configs/synthetic.py:smoke'
GCS_ROOT = 'gs://bucket/runs'
DATA_DIR = 'gs://bucket/tfds'
UNITS = [sweep.Unit(SMOKE, {'seed': 0}, name='first'),
         sweep.Unit(SMOKE, {'seed': 1}, name='second', after=('first',))]


def _requirements():
  with open(os.path.join(ROOT, 'requirements.txt')) as f:
    return f.read()


@pytest.fixture(scope='module')
def xmanager():
  return pytest.importorskip('xmanager')


def _plan(kind, accelerator, **kwargs):
  args = dict(units=UNITS, root=GCS_ROOT, data_dir=DATA_DIR, kind=kind,
              accelerator=accelerator, requirements_text=_requirements())
  return xm_cloud.plan(**dict(args, **kwargs))


def test_accelerator_flag_reads_name_and_count_or_says_the_form():
  assert xm_cloud.parse_accelerator('tpu_v4=8') == ('tpu_v4', 8)
  assert xm_cloud.parse_accelerator(' A100=8') == ('a100', 8)
  for bad in ('a100', 'a100=0', '=8', 'a100=eight', ''):
    with pytest.raises(errors.ConfigError, match='give NAME=COUNT'):
      xm_cloud.parse_accelerator(bad)


def test_each_job_gets_its_gs_workdir_and_the_shared_data_dir():
  first, second = xm_cloud.jobs(UNITS, GCS_ROOT, DATA_DIR)
  assert first.args == (
      f'--config={SMOKE}', f'--workdir={GCS_ROOT}/first',
      '--mode=train_and_eval', '--config.seed=0',
      f'--config.dataset.data_dir={DATA_DIR}')
  assert (second.unit, second.after) == ('second', ('first',))
  with pytest.raises(errors.ConfigError) as info:
    xm_cloud.jobs(UNITS, '/local/runs', DATA_DIR)
  assert str(info.value).startswith(
      '--root=/local/runs: a cloud executor needs a gs:// path')


def test_image_installs_requirements_then_the_accelerators_jax():
  jax = tpu_vm.pinned_version(_requirements(), 'jax')
  assert xm_cloud.pip_extra('tpu_v3', jax) == [
      f'jax[tpu]=={jax}', '-f', tpu_vm.LIBTPU_FIND_LINKS]
  assert xm_cloud.pip_extra('a100', jax) == [f'jax[cuda12]=={jax}']
  steps = xm_cloud.docker_instructions('repo', [f'jax[cuda12]=={jax}'])
  install = steps.index(
      f'RUN python -m pip install -q -r /app/requirements.txt '
      f'jax[cuda12]=={jax}')
  # The code comes after the installed layer, which a code change keeps.
  assert steps.index('COPY repo/requirements.txt /app/requirements.txt') < (
      install) < steps.index('COPY repo/ /app')


def test_vertex_a100_jobs_as_a_dry_run_shows_them(xmanager):
  del xmanager
  first, second = _plan('vertex', 'a100=8')
  assert first['executor'] == 'Vertex'
  assert first['requirements'] == 'xm.JobRequirements(a100=8.0)'
  # XManager's own translation to a Vertex machine.
  assert first['platform'] == {'accelerator_type': 'NVIDIA_TESLA_A100',
                               'accelerator_count': 8,
                               'machine_type': 'a2-highgpu-8g'}
  assert first['image']['packaging'] == 'xm.python_container'
  assert first['image']['pip'][-1] == 'jax[cuda12]==' + (
      tpu_vm.pinned_version(_requirements(), 'jax'))
  assert first['args'][1] == f'--workdir={GCS_ROOT}/first'
  assert second['args'][1] == f'--workdir={GCS_ROOT}/second'
  assert second['after'] == ['first']
  tpu_v3 = _plan('vertex', 'tpu_v3=8')[0]
  assert tpu_v3['platform']['machine_type'] == 'cloud-tpu'
  assert '-f' in tpu_v3['image']['pip']


def test_kubernetes_a100_pods_ask_for_the_gpus(xmanager):
  del xmanager
  [job, _] = _plan('kubernetes', 'a100=8')
  assert job['executor'] == 'Kubernetes'
  assert job['platform'] == {
      'limits': {'nvidia.com/gpu': '8'}, 'annotations': {},
      'node_selector': {'cloud.google.com/gke-accelerator':
                        'nvidia-tesla-a100'}}


@pytest.mark.parametrize('kind, accelerator, message', [
    ('vertex', 'tpu_v4=8', "XManager's Vertex executor cannot request "
     'TPU_V4: it maps only TPU v2/v3'),
    ('kubernetes', 'tpu_v4=8', "XManager's Kubernetes executor cannot "
     "request TPU_V4: it puts no TPU in the pod's resource limits"),
    ('vertex', 'a100=32', '--accelerator: a100=32 does not fit'),
    ('vertex', 'b100=2', "--accelerator=b100=2: XManager knows no resource"),
    ('local', 'a100=8', '--xm_executor=local; the cloud executors are'),
])
def test_what_xmanager_cannot_submit_is_one_line(xmanager, kind, accelerator,
                                                 message):
  del xmanager
  with pytest.raises(errors.ConfigError) as info:
    _plan(kind, accelerator)
  assert str(info.value).startswith(message) and '\n' not in str(info.value)
  if 'tpu_v4' in accelerator:
    assert '--launcher=tpu_vm' in str(info.value)


def test_requirements_as_xmanager_would_set_them(xmanager):
  """XManager 0.8.1 cannot build requirements with an accelerator (its
  ResourceType has no architecture()); ours hold what its constructor sets."""
  from xmanager import xm  # pylint: disable=g-import-not-at-top
  del xmanager
  result = xm_cloud.requirements(xm, 'a100', 8)
  assert result.accelerator == xm.ResourceType.A100
  assert dict(result.task_requirements) == {xm.ResourceType.A100: 8.0}
  assert result.topology == xm.Topology('8') and result.replicas == 1
  assert result.service_tier == xm.JobRequirements().service_tier


def test_launch_without_docker_stops_in_one_line(xmanager, monkeypatch):
  del xmanager
  monkeypatch.setattr(xm_cloud.shutil, 'which', lambda name: None)
  with pytest.raises(errors.ConfigError) as info:
    xm_cloud.launch(UNITS, GCS_ROOT, DATA_DIR, 'vertex', 'a100=8',
                    _requirements())
  assert str(info.value).startswith(
      '--xm_executor=vertex builds the image with Docker '
      '(xm.python_container); install Docker')
