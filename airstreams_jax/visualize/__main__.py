r"""The paper's figures of a trained run (or an evolution) as PNG files.

  python -m airstreams_jax.visualize --workdir=workdirs/synthetic \
      [--out=workdirs/synthetic/figures] [--num_clips=4] [--split=test]

For a training run's workdir, on the first `num_clips` clips (first view) of
`split` (default: the run's evaluation split):
  flow.png          Figure 3: two frames, the learned flow between them in the
                    colour-wheel coding (legend wheel) and the true flow where
                    the dataset knows it (synthetic data).
  segmentation.png  Figure 4: frame | learned segmentation (argmax of the
                    logits) | teacher mask | true mask (where known), with
                    the class colours.
  confusion.png     the merged head's confusion matrix over the whole split,
                    with class names (single-label datasets).
For an evolution's workdir (`--mode=evolve`):
  evolution.png     Figure 5: the top-5 weightings and the fitness of every
                    evaluation, redrawn from `evolution_history.jsonl`.
The streams a run does not have are skipped. TensorBoard gets the same
pictures during training (`samples/*`, `eval/confusion_matrix`).
"""

if __name__ == '__main__':
  # Before anything loads TensorFlow: its native start-up lines stay off the
  # console (and from in front of a one-line error).
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.use_huge_pages()  # Re-runs the process first where it helps.
  _cli.quiet_tensorflow_import()

import os
import sys

from absl import app
from absl import flags
from absl import logging

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.visualize import run_figures

_WORKDIR = flags.DEFINE_string(
    'workdir', None, "A training run's or an evolution's workdir.")
_OUT = flags.DEFINE_string('out', '', 'Where the PNGs go; default '
                           'WORKDIR/figures.')
_NUM_CLIPS = flags.DEFINE_integer('num_clips', 4, 'Clips drawn in the flow '
                                  'and segmentation figures.', lower_bound=1)
_SPLIT = flags.DEFINE_string('split', '', "The dataset split; default the "
                             "run's evaluation split.")


def main(argv):
  cli.setup_logging()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  out = _OUT.value or os.path.join(_WORKDIR.value, 'figures')
  try:
    written = run_figures.write_figures(
        _WORKDIR.value, out, num_clips=_NUM_CLIPS.value,
        split=_SPLIT.value)
  except errors.ConfigError as e:
    sys.exit(f'error: {cli.one_line(e)}')
  for name, path in written.items():
    logging.info('%s: %s', name, path)
    print(f'Wrote {path}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
