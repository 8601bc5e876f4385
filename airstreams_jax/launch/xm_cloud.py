"""XManager on the cloud: a sweep's units as Vertex AI or Kubernetes jobs.

  python -m airstreams_jax.launch --launcher=xmanager \
      --xm_executor=vertex|kubernetes --accelerator=a100=8 \
      (--sweep=FILE.py[:arg] | --config=FILE.py[:arg]) \
      --root=gs://BUCKET/runs --data_dir=gs://BUCKET/tfds [--dry_run]

The code goes as one image built by `xm.python_container` from this
checkout (Docker builds it): requirements.txt plus the accelerator's jax
extra at requirements.txt's jax pin, on a Python 3.11 base (XManager's
default base image is a CUDA 11 one with an older Python). Each unit is a
job of that image whose arguments are its `airstreams_jax.main` flags, with
its workdir `ROOT/<unit>` and the shared data_dir, both on gs:// (a job
does not see this machine's disk). A unit is submitted once the units it
waits for completed.

`--dry_run` builds every job's executor with XManager and prints what would
be submitted: the executor, the requirements, what XManager makes of them
for the platform (Vertex's machine spec, the pod's resource limits and
selectors: XManager's own functions) and the arguments per unit.
The local executor stays in `xm_launcher.py`.
"""

import asyncio
import dataclasses
import os
import re
import shutil
import types
from typing import Any, Dict, List, Sequence, Tuple

from airstreams_jax import errors
from airstreams_jax.launch import sweep as sweep_lib
from airstreams_jax.launch import tpu_vm
from airstreams_jax.launch import xm_launcher

EXECUTORS = ('vertex', 'kubernetes')
BASE_IMAGE = 'python:3.11-slim'
_ACCELERATOR = re.compile(r'^([a-z][a-z0-9_]*)=([1-9]\d*)$')
# The jax extra that brings each kind of accelerator's runtime: libtpu (from
# Google's page) for TPUs, the CUDA 12 wheels for NVIDIA GPUs.
_TPU_PREFIX = 'tpu_'


def parse_accelerator(text: str) -> Tuple[str, int]:
  """'tpu_v4=8' -> ('tpu_v4', 8); ConfigError naming the form otherwise."""
  match = _ACCELERATOR.match((text or '').strip().lower())
  if not match:
    raise errors.ConfigError(
        f'--accelerator={text}: give NAME=COUNT with an XManager resource '
        'name, e.g. --accelerator=a100=8 or --accelerator=tpu_v3=8.')
  return match.group(1), int(match.group(2))


def pip_extra(accelerator: str, jax_version: str) -> List[str]:
  """The pip arguments that add the accelerator's jax build."""
  if accelerator.startswith(_TPU_PREFIX):
    return [f'jax[tpu]=={jax_version}', '-f', tpu_vm.LIBTPU_FIND_LINKS]
  return [f'jax[cuda12]=={jax_version}']


def docker_instructions(directory: str, extra: Sequence[str]) -> List[str]:
  """The image's build steps (XManager adds FROM, the entrypoint and its
  arguments). Requirements first: code changes keep the installed layer."""
  return [
      'ENV LANG=C.UTF-8',
      f'COPY {directory}/requirements.txt /app/requirements.txt',
      'RUN python -m pip install -q -r /app/requirements.txt '
      + ' '.join(extra),
      f'COPY {directory}/ /app',
      'RUN python -m pip install -q --no-deps -e /app',
      'WORKDIR /app',
  ]


def requirements(xm, name: str, count: int):
  """`xm.JobRequirements(name=count)`.

  XManager 0.8.1 raises AttributeError for every accelerator there
  (`ResourceType.architecture()` does not exist; google-deepmind/xmanager
  pull request 70): the same fields are then set as its constructor sets
  them for one accelerator and no architecture.
  """
  try:
    return xm.JobRequirements(**{name: count})
  except KeyError:
    raise errors.ConfigError(
        f'--accelerator={name}={count}: XManager knows no resource {name!r}; '
        'use a lower-case xm.ResourceType name, e.g. a100, v100, tpu_v3.'
        ) from None
  except AttributeError as e:
    if 'architecture' not in str(e):
      raise
  result = xm.JobRequirements()
  resource = xm.ResourceType[name]
  result.task_requirements[resource] = float(count)
  result.accelerator = resource
  result.topology = xm.Topology(str(count))
  return result


def executor(xm, xm_local, kind: str, accelerator: str):
  """The executor of every unit's job."""
  name, count = parse_accelerator(accelerator)
  cls = {'vertex': xm_local.Vertex, 'kubernetes': xm_local.Kubernetes}[kind]
  return cls(requirements=requirements(xm, name, count))


def _plain(value: Any) -> Any:
  """Enums by name, protobuf-style values as text: JSON for the plan."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if hasattr(value, 'name') and not isinstance(value, str):
    return value.name
  return value


def platform_spec(xm, kind: str, job_executor) -> Dict[str, Any]:
  """What XManager would ask the platform for, from its own translation;
  ConfigError when the accelerator would not be part of the request."""
  accelerator = job_executor.requirements.accelerator
  if kind == 'vertex':
    from xmanager.cloud import vertex  # pylint: disable=g-import-not-at-top
    try:
      return _plain(vertex.get_machine_spec(
          types.SimpleNamespace(executor=job_executor)))
    except KeyError:  # Its table of Vertex TPU types has v2 and v3 only.
      raise errors.ConfigError(
          f'XManager\'s Vertex executor cannot request {accelerator}: it '
          'maps only TPU v2/v3 and NVIDIA GPUs to Vertex machines. For a '
          'TPU v4 slice use --launcher=tpu_vm.') from None
    except ValueError as e:  # A GPU count no machine type has.
      raise errors.ConfigError(f'--accelerator: {e}.') from None
  from xmanager.cloud import kubernetes  # pylint: disable=g-import-not-at-top
  limits = dict(kubernetes.requirements_from_executor(job_executor).limits
                or {})
  if accelerator is not None and accelerator in xm.TpuType:
    # XManager puts no TPU into the pod's limits, only the annotation of
    # GKE's retired Cloud TPU integration: the pod would get no TPU.
    raise errors.ConfigError(
        f'XManager\'s Kubernetes executor cannot request {accelerator}: it '
        'puts no TPU in the pod\'s resource limits. For TPUs use '
        '--launcher=tpu_vm; on Kubernetes use GPUs (e.g. a100=8).')
  return {'limits': limits,
          'annotations': kubernetes.annotations_from_executor(job_executor),
          'node_selector': kubernetes.node_selector_from_executor(
              job_executor)}


@dataclasses.dataclass(frozen=True)
class CloudJob:
  """One unit's job, as it would be submitted."""
  unit: str
  after: Tuple[str, ...]
  args: Tuple[str, ...]  # main's flags (the image's entrypoint is main).


def jobs(units: Sequence[sweep_lib.Unit], root: str,
         data_dir: str) -> List[CloudJob]:
  """Every unit's job: gs:// workdir under `root` and the shared data_dir."""
  tpu_vm.check_remote(root, data_dir, launcher='a cloud executor')
  return [CloudJob(u.name, tuple(u.dependencies()),
                   tuple(tpu_vm.main_args(u, root)[2:]))
          for u in tpu_vm.with_data_dir(units, data_dir)]


def plan(units: Sequence[sweep_lib.Unit], root: str, data_dir: str,
         kind: str, accelerator: str, requirements_text: str
         ) -> List[Dict[str, Any]]:
  """The dry run: what each unit's submission would hold."""
  if kind not in EXECUTORS:
    raise errors.ConfigError(f'--xm_executor={kind}; the cloud executors '
                             f'are {", ".join(EXECUTORS)}.')
  xm, xm_local = xm_launcher.import_xmanager()
  job_executor = executor(xm, xm_local, kind, accelerator)
  platform = platform_spec(xm, kind, job_executor)
  extra = pip_extra(parse_accelerator(accelerator)[0],
                    tpu_vm.pinned_version(requirements_text, 'jax'))
  image = {'packaging': 'xm.python_container', 'base_image': BASE_IMAGE,
           'path': tpu_vm.REPOSITORY, 'entrypoint': 'airstreams_jax.main',
           'pip': ['-r', 'requirements.txt', *extra]}
  return [{'unit': job.unit, 'after': list(job.after),
           'executor': type(job_executor).__name__,
           'requirements': repr(job_executor.requirements),
           'platform': platform, 'image': image, 'args': list(job.args)}
          for job in jobs(units, root, data_dir)]


def launch(units: Sequence[sweep_lib.Unit], root: str, data_dir: str,
           kind: str, accelerator: str, requirements_text: str,
           image_tag: str = '') -> int:
  """Builds the image and submits the jobs; returns the experiment id.

  Not run here: it needs Docker, a Google Cloud project and (Kubernetes) a
  cluster. Raises errors.ConfigError before anything is built when the plan
  does not hold or Docker is missing.
  """
  specs = plan(units, root, data_dir, kind, accelerator, requirements_text)
  if shutil.which('docker') is None:
    raise errors.ConfigError(
        f'--xm_executor={kind} builds the image with Docker '
        '(xm.python_container); install Docker '
        '(https://docs.docker.com/engine/install/) and start it.')
  xm, xm_local = xm_launcher.import_xmanager()
  job_executor = executor(xm, xm_local, kind, accelerator)
  packageable = xm.python_container(
      executor_spec=type(job_executor).Spec(push_image_tag=image_tag or None),
      path=tpu_vm.REPOSITORY, base_image=BASE_IMAGE,
      entrypoint=xm.ModuleName('airstreams_jax.main'), use_deep_module=True,
      docker_instructions=docker_instructions(
          os.path.basename(tpu_vm.REPOSITORY), specs[0]['image']['pip'][2:]))

  async def submit() -> int:
    async with xm_local.create_experiment(
        experiment_title=f'airstreams_jax {root}') as experiment:
      [executable] = experiment.package([packageable])
      finished = {spec['unit']: asyncio.Event() for spec in specs}
      failed = set()

      async def one(spec):
        # A unit starts once the units it waits for completed; after a
        # failed one it does not start (the local launchers' "blocked").
        try:
          for name in spec['after']:
            await finished[name].wait()
          if failed & set(spec['after']):
            failed.add(spec['unit'])
            return
          work_unit = await experiment.add(xm.Job(
              executable, executor=job_executor, args=spec['args']))
          await work_unit.wait_until_complete()
        except Exception:  # pylint: disable=broad-except
          failed.add(spec['unit'])
          raise
        finally:
          finished[spec['unit']].set()

      await asyncio.gather(*(one(s) for s in specs), return_exceptions=True)
      if failed:
        raise errors.ConfigError(
            f'experiment {experiment.experiment_id}: units failed or not '
            f'started: {", ".join(sorted(failed))}.')
      return experiment.experiment_id

  return asyncio.run(submit())
