"""Every command the README gives still starts: its `--help` exits with
status 0 and lists its flags.

The commands run in one subprocess, one after another, as `python -m` runs
them (`runpy.run_module(..., run_name='__main__')`): TensorFlow and JAX load
once, and the flags each command defines are removed before the next one
defines its own.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each command and flags its help must list.
COMMANDS = {
    'airstreams_jax.main': ('config', 'workdir', 'mode', 'jit_cache_dir'),
    'airstreams_jax.predict': ('workdir', 'video', 'top_k', 'output_json',
                               'window_stride', 'views', 'format'),
    'airstreams_jax.data.build': ('config',),
    'airstreams_jax.export': ('workdir', 'out', 'format'),
    'airstreams_jax.model_info': ('config', 'num_classes', 'num_seg_classes'),
    'airstreams_jax.visualize': ('workdir', 'out', 'num_clips', 'split'),
    'airstreams_jax.launch': ('sweep', 'root', 'parallel', 'dry_run',
                              'launcher', 'tpu', 'zone', 'action',
                              'xm_executor', 'accelerator'),
    'airstreams_jax.tools.benchmark': ('out', 'quick', 'only',
                                       'official_flow'),
    'airstreams_jax.tools.ablations': ('dataset_config', 'seeds', 'root',
                                       'set', 'tables_only'),
    'airstreams_jax.tools.summarize_sweep': ('root', 'out'),
    'airstreams_jax.tools.fidelity': ('config', 'workdir', 'weightings',
                                      'repeats', 'seeds', 'proxy_steps',
                                      'jit_cache_dir'),
    'airstreams_jax.tools.real_video_figures': ('realdata', 'run', 'out',
                                                'only'),
    'airstreams_jax.tools.make_video_folder': ('root', 'num_train',
                                               'oracle_drop_prob'),
    'airstreams_jax.tools.fault_injection': ('kills', 'root', 'seed',
                                             'data_dir', 'signal'),
}
# `tfds build` on the folder dataset, with tfds's own flags. In a process of
# its own: a dataset module run as `__main__` registers its builder again.
TFDS_BUILD_COMMANDS = {
    'airstreams_jax.data.video_folder': ('manual_dir', 'data_dir'),
}
# Modules run as programs that are not commands: the benchmark's PyTorch
# process, which its parent starts with two pipe descriptors.
NOT_COMMANDS = ('airstreams_jax.tools.torch_worker',)

_RUN_EACH_HELP = r'''
import contextlib, io, json, runpy, sys
from absl import app, flags
app.define_help_flags()
defined = set(flags.FLAGS)
results = {}
for module in sys.argv[1:]:
  sys.argv = [module, '--help']
  out = io.StringIO()
  code = 'returned'
  with contextlib.redirect_stdout(out):
    try:
      runpy.run_module(module, run_name='__main__', alter_sys=True)
    except SystemExit as e:
      code = e.code
  results[module] = [code, out.getvalue()]
  for name in set(flags.FLAGS) - defined:  # The next command's are its own.
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
print(json.dumps(results))
'''


def _programs():
  """Every module of the package with an `if __name__ == '__main__':`."""
  package = os.path.join(_ROOT, 'airstreams_jax')
  for folder, _, files in os.walk(package):
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(folder, name)
      with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
      if any(isinstance(node, ast.If) and
             ast.unparse(node.test) == "__name__ == '__main__'"
             for node in tree.body):
        module = os.path.relpath(path, _ROOT)[:-3].replace(os.sep, '.')
        yield module[:-len('.__main__')] if module.endswith(
            '.__main__') else module


def test_every_program_of_the_package_is_a_tested_command():
  assert set(_programs()) == (set(COMMANDS) | set(TFDS_BUILD_COMMANDS) |
                              set(NOT_COMMANDS))


def _help_of_each(modules):
  """{module: (exit status, what it printed)} of `python -m module --help`,
  all in one process."""
  proc = subprocess.run(
      [sys.executable, '-c', _RUN_EACH_HELP, *modules], cwd=_ROOT,
      capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_command_prints_its_help_and_exits_with_0():
  results = _help_of_each(COMMANDS)
  for module, expected_flags in COMMANDS.items():
    code, text = results[module]
    assert code == 0, (module, code, text[-2000:])
    # Its docstring (the command line it documents), then its flags.
    assert f'python -m {module}' in text, (module, text[:500])
    for flag in expected_flags:
      assert f'--{flag}' in text, (module, flag, text[-2000:])


@pytest.mark.slow
def test_the_tfds_build_commands_print_their_help():
  results = _help_of_each(TFDS_BUILD_COMMANDS)
  for module, expected_flags in TFDS_BUILD_COMMANDS.items():
    code, text = results[module]
    assert code == 0, (module, code, text[-2000:])
    for flag in expected_flags:
      assert f'--{flag}' in text, (module, flag, text[-2000:])
