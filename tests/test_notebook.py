"""notebooks/quickstart.ipynb runs top to bottom (at smoke scale), and is
committed without outputs."""

import os
import re
import sys

import nbformat
from nbclient import NotebookClient
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')


def test_notebook_is_committed_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [c for c in notebook.cells if c.cell_type == 'code']
  assert code
  for cell in code:
    assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, data_dir):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  env = dict(os.environ,
             AIRSTREAMS_NOTEBOOK_SMOKE='1',
             AIRSTREAMS_NOTEBOOK_WORKDIR=str(tmp_path / 'work'),
             AIRSTREAMS_NOTEBOOK_DATA_DIR=data_dir,
             # The kernel is this interpreter's (the venv's) Python.
             PATH=os.path.dirname(sys.executable) + os.pathsep +
             os.environ.get('PATH', ''))
  client = NotebookClient(
      notebook, timeout=600, kernel_name='python3',
      # Start in notebooks/, as Jupyter does for a notebook there.
      resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}})
  client.execute(env=env)  # A failing cell raises CellExecutionError.
  work = tmp_path / 'work'
  printed = ''.join(o.get('text', '') for c in notebook.cells
                    if c.cell_type == 'code' for o in c.outputs)
  assert 'merged top-1' in printed and 'learned flow direction' in printed
  assert 'true class' in printed and 'predicted' in printed
  assert 'best weights after 8 evaluations' in printed
  # What the cells print on stderr is the run's progress, 'HH:MM:SS ...';
  # no TensorFlow native chatter, no absl pre-parse notice.
  logged = [line for c in notebook.cells if c.cell_type == 'code'
            for o in c.outputs if o.get('name') == 'stderr'
            for line in o['text'].splitlines() if line.strip()]
  assert logged and all(re.match(r'\d\d:\d\d:\d\d ', line)
                        for line in logged), [
                            line for line in logged
                            if not re.match(r'\d\d:\d\d:\d\d ', line)][:5]
  images = [o for c in notebook.cells if c.cell_type == 'code'
            for o in c.outputs if 'image/png' in o.get('data', {})]
  # Learning curve, flow, segmentation, confusion matrix, evolution.
  assert len(images) == 5
  for name in ('flow.png', 'segmentation.png', 'confusion.png'):
    assert (work / 'run' / 'figures' / name).exists()
  assert (work / 'evolve' / 'best_weights.json').exists()
