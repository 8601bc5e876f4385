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
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import os

from absl import flags
from absl import logging

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.visualize import run_figures


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string(
      'workdir', None, "A training run's or an evolution's workdir.")
  flags.DEFINE_string('out', '', 'Where the PNGs go; default WORKDIR/figures.')
  flags.DEFINE_integer('num_clips', 4, 'Clips drawn in the flow and '
                       'segmentation figures.', lower_bound=1)
  flags.DEFINE_string('split', '', "The dataset split; default the run's "
                      'evaluation split.')
  flags.mark_flags_as_required(['workdir'])


def main() -> None:
  args = flags.FLAGS
  out = args.out or os.path.join(args.workdir, 'figures')
  written = run_figures.write_figures(
      args.workdir, out, num_clips=args.num_clips, split=args.split)
  for name, path in written.items():
    logging.info('%s: %s', name, path)
    print(f'Wrote {path}')


if __name__ == '__main__':
  cli.run(main, define_flags, one_line_errors=(errors.ConfigError,))
