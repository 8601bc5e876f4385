"""Huge pages for the host buffers (`cli.use_huge_pages`): when the entry
points re-run themselves with glibc's tunable, that they do so once and keep
their PID and arguments, and that the tunable does cut the page faults of
large allocations on this machine."""

import os
import subprocess
import sys
from unittest import mock

import pytest

from airstreams_jax import cli

_MADVISE = 'always [madvise] never\n'
_GLIBC = ('glibc', '2.36')


def test_the_tunable_is_added_where_glibc_and_the_kernel_support_it():
  env = cli.huge_pages_environment({'PATH': '/bin'}, _MADVISE, _GLIBC)
  assert env == {'PATH': '/bin', 'GLIBC_TUNABLES': cli.HUGE_PAGES_TUNABLE}
  # Other tunables are kept.
  env = cli.huge_pages_environment(
      {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, '[always] madvise never',
      _GLIBC)
  assert env['GLIBC_TUNABLES'] == (
      f'glibc.malloc.arena_max=2:{cli.HUGE_PAGES_TUNABLE}')


@pytest.mark.parametrize('environ,thp,libc', [
    # The user's own choice (the way to opt out), or already re-run.
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, _MADVISE, _GLIBC),
    ({'GLIBC_TUNABLES': cli.HUGE_PAGES_TUNABLE}, _MADVISE, _GLIBC),
    ({}, 'always madvise [never]\n', _GLIBC),  # Off in the kernel.
    ({}, '', _GLIBC),
    ({}, _MADVISE, ('glibc', '2.31')),  # Before the tunable existed.
    ({}, _MADVISE, ('musl', '1.2')),
])
def test_nothing_changes_where_it_would_not_help(environ, thp, libc):
  assert cli.huge_pages_environment(environ, thp, libc) is None


_PROBE = r'''
import ctypes, os, resource, sys
sys.stdout.write(f'start {os.getpid()} {sys.argv[1:]}\n')
from airstreams_jax import cli
cli.use_huge_pages()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
for _ in range(3):  # Mapped, touched and freed each time, as XLA's buffers.
  block = libc.malloc(256 << 20)
  ctypes.memset(block, 1, 256 << 20)
  libc.free(block)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(f'ran {os.getpid()} {os.environ.get("GLIBC_TUNABLES")} {faults}')
'''


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _probe(tmp_path, env, *command):
  script = tmp_path / 'probe.py'
  script.write_text(_PROBE)
  result = subprocess.run([sys.executable, *command, str(script), 'a',
                           '--b=c'], env=env, cwd=_ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
  return result.stdout.split('\n')


def _thp_mode():
  try:
    with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
      return f.read().split('[')[1].split(']')[0]
  except (OSError, IndexError):
    return ''


@pytest.mark.slow
def test_an_entry_point_reruns_itself_once_with_the_tunable(tmp_path):
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', 'AIRSTREAMS_JAX_HUGE_PAGES_RERUN')}
  if cli.huge_pages_environment(env) is None:
    pytest.skip('no transparent huge pages or glibc >= 2.35 here')
  lines = _probe(tmp_path, env)
  # Started twice (the second time with the tunable), same PID and
  # arguments, then ran once.
  pid = lines[0].split()[1]
  assert lines[:2] == [f"start {pid} ['a', '--b=c']"] * 2
  _, ran_pid, tunables, faults = lines[2].split()
  assert (ran_pid, tunables) == (pid, cli.HUGE_PAGES_TUNABLE)
  # Opted out: one start.
  lines = _probe(tmp_path, dict(env, GLIBC_TUNABLES='glibc.malloc.hugetlb=0'))
  assert lines[0].startswith('start') and lines[1].startswith('ran')
  if _thp_mode() == 'madvise':
    # Only what asks for huge pages gets them: 3 x 256 MiB of 4 KiB pages
    # faulted in without the tunable, a few hundred faults with it. (With
    # 'always' every large block gets them anyway.)
    opted_out_faults = int(lines[1].split()[3])
    assert opted_out_faults > 3 * (256 << 20) // 4096 * 0.9
    assert int(faults) < opted_out_faults / 10


@pytest.mark.slow
def test_a_module_run_inside_another_program_is_not_rerun(tmp_path):
  """Under a host that runs the file itself (here runpy, as IPython's %run
  or a debugger would) re-running would replace the host: one start."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', 'AIRSTREAMS_JAX_HUGE_PAGES_RERUN')}
  host = tmp_path / 'host.py'
  host.write_text('import runpy, sys\n'
                  'sys.argv = sys.argv[1:]\n'
                  "runpy.run_path(sys.argv[0], run_name='__main__')\n")
  lines = _probe(tmp_path, env, str(host))
  assert lines[0].startswith('start')
  assert lines[1].split()[:3] == ['ran', lines[0].split()[1], 'None']


def test_the_test_workers_run_with_it():
  """conftest.py sets it before pytest-xdist starts its workers (with -n 0
  the tests run in the pytest process, started without it)."""
  if 'PYTEST_XDIST_WORKER' not in os.environ:
    pytest.skip('not a pytest-xdist worker')
  env = {k: v for k, v in os.environ.items() if k != 'GLIBC_TUNABLES'}
  if cli.huge_pages_environment(env) is None:
    pytest.skip('no transparent huge pages or glibc >= 2.35 here')
  assert cli.HUGE_PAGES_TUNABLE in os.environ.get('GLIBC_TUNABLES', '')
  with open(f'/proc/{os.getpid()}/environ', 'rb') as f:  # Since exec.
    assert cli.HUGE_PAGES_TUNABLE.encode() in f.read()


@pytest.mark.parametrize('path', [
    'airstreams_jax/main.py', 'airstreams_jax/predict.py',
    'airstreams_jax/export.py', 'airstreams_jax/model_info.py',
    'airstreams_jax/visualize/__main__.py', 'airstreams_jax/launch/__main__.py',
    'airstreams_jax/tools/benchmark.py', 'airstreams_jax/tools/ablations.py',
    'airstreams_jax/tools/fault_injection.py',
    'airstreams_jax/tools/make_video_folder.py',
    'airstreams_jax/tools/summarize_sweep.py'])
def test_the_entry_points_rerun_before_loading_anything(path):
  """Their first `if __name__ == '__main__':` block calls `cli.start` (which
  calls it first) before any import (the tests' own runs of them have the
  tunable already, so they would not notice a missing call)."""
  with open(os.path.join(_ROOT, path)) as f:
    text = f.read()
  first = text.index("if __name__ == '__main__':")
  block = text[first:]
  assert block.index('_cli.start(') < min(
      block.index('\nimport '), block.index('\nfrom '))
  assert '\nimport ' not in text[:first] and '\nfrom ' not in text[:first]


def test_start_reruns_before_it_loads_tensorflow():
  calls = []
  with mock.patch.object(cli, 'use_huge_pages',
                         lambda: calls.append('huge pages')), \
       mock.patch.object(cli, 'quiet_tensorflow_import',
                         lambda: calls.append('tensorflow')):
    cli.start()
    cli.start(tensorflow=False)
  assert calls == ['huge pages', 'tensorflow', 'huge pages']
