"""User paths (workdir, data_dir, manual_dir, teacher files, init_from) may
be remote (gs://): the package reads and writes them through gfile, and the
few local-only file calls left are listed here with their reason.

Read from the source with `ast`, so a new bare `open(` or `os.path.exists`
fails here until it goes through gfile or is listed with its reason.
"""

import ast
import os

import pytest
from tensorflow.io import gfile

from airstreams_jax import user_paths

_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), 'airstreams_jax')

# Calls that reach only this machine's file system.
_LOCAL_ONLY = {
    'open', 'os.path.exists', 'os.path.isdir', 'os.path.isfile',
    'os.path.getsize', 'os.listdir', 'os.makedirs', 'os.mkdir', 'os.scandir',
    'os.replace', 'os.rename', 'os.remove', 'os.unlink', 'os.walk',
    'os.fdopen', 'os.stat', 'os.access', 'glob.glob'}

# (file under airstreams_jax/, outermost function or '*' for the whole file)
# -> why a local-only call is right there.
ALLOWED = {
    ('cli.py', 'huge_pages_environment'): 'reads /sys (the kernel setting)',
    ('cli.py', '_started_as_main_file'): 'the command-line script itself',
    ('cli.py', '_open'): 'the log file; main gives none for a remote workdir',
    ('main.py', '_check_workdir'): 'a local workdir only (remote ones are '
                                   'skipped: the first write tells)',
    ('user_paths.py', 'is_file'): 'its local branch',
    ('user_paths.py', 'local_file'): 'the local copy of a remote file',
    ('data/dataset_from_config.py', 'build_lock'):
        'flock on a local data_dir (a remote one is not locked)',
    ('data/video_folder.py', '_subfolders'): 'its local branch (symlink and '
                                             'device checks)',
    ('data/video_folder.py', '_videos'): 'its local branch (symlink and '
                                         'device checks)',
    ('data/video_io.py', '_open'): 'its local branch; remote videos are read '
                                   'through gfile',
    ('export.py', 'export_saved_model'): 'a SavedModel is staged and written '
                                         'locally (check_args refuses a '
                                         'remote --out)',
    ('teachers/tflite.py', 'read_class_names'): 'reads the local copy '
                                                '(user_paths.local_file)',
    ('teachers/mediapipe_wheel.py', '*'): "pip's wheel and its extracted "
                                          'models in the local cache',
    ('launch/local.py', '*'): 'the local launcher: its root, logs and lock '
                              'are on the machine that runs the processes',
    ('launch/record.py', '*'): "the launcher's record of local runs",
    ('launch/xm_launcher.py', '*'): "the XManager launcher's local root",
    ('launch/__main__.py', '_tpu_vm'): "this checkout's requirements.txt, "
                                       'gcloud on PATH, and the local folder '
                                       'that --action=logs pulls into',
    ('launch/__main__.py', '_xm_cloud'): "this checkout's requirements.txt "
                                         '(installed in the image)',
    ('launch/xm_cloud.py', 'launch'): "Docker on this machine's PATH",
    ('launch/config_overrides.py', '*'): 'a config or sweep file given on '
                                         'the command line (Python to import)',
    ('tools/', '*'): 'developer tools run on this machine (benchmarks, fault '
                     'injection, tables, /proc readings)',
}


def _name(node) -> str:
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    base = _name(node.value)
    return f'{base}.{node.attr}' if base else ''
  return ''


def _local_calls(path: str):
  """(outermost function, called name, line) of each local-only call."""
  tree = ast.parse(open(path, encoding='utf-8').read(), path)
  found = []

  def visit(node, function):
    if isinstance(node, ast.Call) and _name(node.func) in _LOCAL_ONLY | {
        n for n in [_name(node.func)] if n.startswith('shutil.')}:
      found.append((function, _name(node.func), node.lineno))
    for child in ast.iter_child_nodes(node):
      inner = function
      if function == '<module>' and isinstance(
          child, (ast.FunctionDef, ast.AsyncFunctionDef)):
        inner = child.name
      elif function == '<module>' and isinstance(child, ast.ClassDef):
        inner = '<module>'
      visit(child, inner)
  visit(tree, '<module>')
  return found


def _allowed(relative: str, function: str) -> bool:
  return any((relative == f or (f.endswith('/') and relative.startswith(f)))
             and fn in ('*', function) for f, fn in ALLOWED)


def _all_local_calls():
  for folder, _, files in os.walk(_PACKAGE):
    for name in sorted(files):
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        relative = os.path.relpath(path, _PACKAGE).replace(os.sep, '/')
        for function, called, line in _local_calls(path):
          yield relative, function, called, line


def test_user_paths_go_through_gfile():
  bypassing = [f'airstreams_jax/{relative}:{line} {called}( in {function}'
               for relative, function, called, line in _all_local_calls()
               if not _allowed(relative, function)]
  assert not bypassing, (
      'local-only file calls on what may be a remote user path; use gfile '
      '(or user_paths), or list the call in ALLOWED with its reason:\n' +
      '\n'.join(bypassing))


def test_every_allowed_entry_still_has_a_local_call():
  """No stale reason: each entry covers at least one call."""
  calls = list(_all_local_calls())
  stale = [key for key in ALLOWED
           if not any(_allowed(r, fn) and (key[0] == r or (
               key[0].endswith('/') and r.startswith(key[0])))
                      and key[1] in ('*', fn) for r, fn, _, _ in calls)]
  assert not stale, stale


def test_the_scan_finds_a_bare_open(tmp_path):
  """The scan itself: a bare open() and os.path.exists() are found."""
  path = tmp_path / 'module.py'
  path.write_text('import os\n\ndef f(p):\n  if os.path.exists(p):\n'
                  '    return open(p).read()\n')
  assert [(fn, name) for fn, name, _ in _local_calls(str(path))] == [
      ('f', 'os.path.exists'), ('f', 'open')]


@pytest.mark.parametrize('path, remote, absolute', [
    ('gs://bucket/run', True, 'gs://bucket/run'),
    ('ram://x/y', True, 'ram://x/y'),
    ('/tmp/run', False, '/tmp/run'),
])
def test_remote_paths_are_kept_as_given(path, remote, absolute):
  assert user_paths.is_remote(path) == remote
  assert user_paths.absolute(path) == absolute


def test_a_local_path_is_made_absolute():
  assert user_paths.absolute('run') == os.path.join(os.getcwd(), 'run')
  assert user_paths.absolute('~/x') == os.path.join(
      os.path.expanduser('~'), 'x')


def test_remote_files_read_as_local_ones():
  """Through TensorFlow's in-memory file system (ram://), which is not
  this machine's: a byte-order mark dropped, CRLF kept for csv, a local
  copy for the libraries that read only local files."""
  directory = 'ram://test_user_paths'
  gfile.makedirs(directory)
  path = f'{directory}/classes.csv'
  with gfile.GFile(path, 'wb') as f:
    f.write('\ufeffid,name\r\n0,run\r\n'.encode('utf-8'))
  assert user_paths.is_file(path)
  assert not user_paths.is_file(directory)
  assert not user_paths.is_file(f'{directory}/missing')
  assert user_paths.open_text(path).read() == 'id,name\n0,run\n'
  assert user_paths.open_text(path, newline='').read() == (
      'id,name\r\n0,run\r\n')
  local = user_paths.local_file(path)
  assert not user_paths.is_remote(local)
  with open(local, 'rb') as f:
    assert f.read().startswith(b'\xef\xbb\xbfid,name')
  assert user_paths.local_file(path) == local  # Copied once.
  # A replaced remote file is copied again (ram:// appends to a file
  # opened for writing again: removed first).
  gfile.remove(path)
  with gfile.GFile(path, 'wb') as f:
    f.write(b'id,name\n1,walk\n')
  with open(user_paths.local_file(path), 'rb') as f:
    assert f.read() == b'id,name\n1,walk\n'
