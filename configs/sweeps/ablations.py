r"""The paper's Tables 1-3 as one sweep, over seeds, for any dataset config.

  python -m airstreams_jax.launch --root=workdirs/tables --sweep=\
configs/sweeps/ablations.py:dataset_config=configs/synthetic.py,seeds=3

(`python -m airstreams_jax.tools.ablations` runs this sweep and writes the tables.)

Units, for each seed s (the config's own loss weights are the "fixed" ones):
  rgb_s{s}                          Table 1: RGB tower alone
  {sem,flow,all}_{propagate,stop}_s{s}
                                    Tables 1-2: + semantics / + flow / all
                                    three, action gradients propagated into
                                    the representations or stopped
  merged_only_s{s}                  Table 3: no auxiliary losses (λ_merged
                                    only; the segmentation net unsupervised)
  uniform_s{s}                      Table 3: all five λ = 1
  evolved_s{s}                      Table 3: the weights evolved by `evolve`
  evolve                            the evolution of the λ (once, seed 0);
                                    the evolved_* units wait for it
Table 3's "fixed weights" row is all_propagate_s{s}.

Arguments (comma-separated key=value):
  dataset_config  main's --config value, file.py[:arg] ('configs/synthetic.py')
  seeds           number of seeds (3)
  steps           num_train_steps of every training unit; 0 = the config's
  evaluations     weightings the evolution evaluates; 0 = the config's
  proxy_steps     steps of each proxy training; 0 = the config's
  data_dir        dataset.data_dir of every unit; '' = the config's
Any other key every unit needs (a real dataset's manual_dir, a teacher):
`python -m airstreams_jax.tools.ablations --set=dataset.manual_dir=DIR`.
"""

from typing import Any, Mapping, Optional

from airstreams_jax.launch import sweep
from configs import base

MERGED_ONLY_WEIGHTS = dict(rgb=0.0, flow=0.0, semantic=0.0, merged=1.0,
                           interm=0.0)
STREAMS = {'rgb': ('rgb',), 'sem': ('rgb', 'semantic'),
           'flow': ('rgb', 'flow'), 'all': ('rgb', 'flow', 'semantic')}
EVOLVE_UNIT = 'evolve'
# Keys the sweep sets per unit, which an override for every unit would
# silently lose to (or replace in some units only), and what sets them.
SWEEP_KEYS = {
    'seed': 'use --seeds', 'num_train_steps': 'use --steps',
    'evolution.num_evaluations': 'use --evaluations',
    'evolution.proxy_steps': 'use --proxy_steps',
    'dataset.data_dir': 'use --data_dir',
    'model.streams': 'the ablation settings choose the streams',
    'model.stop_gradient': 'the ablation settings choose stop or propagate',
    'loss_weights': 'Table 3\'s settings choose the weights; the fixed ones '
                    'are the dataset config\'s own',
    'loss_weights_file': 'the evolved units read the evolution\'s',
}


def parse(arg):
  return base.parse_arg(arg, dataset_config='configs/synthetic.py', seeds=3,
                        steps=0, evaluations=0, proxy_steps=0, data_dir='')


def get_sweep(arg=None):
  """The units; a dataset config whose own argument holds commas (e.g.
  'configs/hmdb51.py:split=1,smoke') goes through `python -m
  airstreams_jax.tools.ablations`, which calls `units` directly."""
  arg = parse(arg)
  return units(arg.dataset_config, seeds=arg.seeds, steps=arg.steps,
               evaluations=arg.evaluations, proxy_steps=arg.proxy_steps,
               data_dir=arg.data_dir)


def units(dataset_config: str, *, seeds: int = 3, steps: int = 0,
          evaluations: int = 0, proxy_steps: int = 0, data_dir: str = '',
          overrides: Optional[Mapping[str, Any]] = None):
  """The ablation units of a dataset config (see the module docstring);
  `overrides` (`--config.*` values by dotted key, e.g. the dataset's
  manual_dir) go to every unit."""
  if seeds < 1:
    raise ValueError(f'seeds={seeds}; give at least 1.')
  for key in overrides or {}:
    owner = next((k for k in SWEEP_KEYS if key == k or key.startswith(k + '.')),
                 None)
    if owner:
      raise ValueError(f'--set={key}: the sweep sets it per unit; '
                       f'{SWEEP_KEYS[owner]}.')
  common = dict(overrides or {})
  if data_dir:
    common['dataset.data_dir'] = data_dir
  # Table 3 compares weightings of the full model, whatever streams or
  # gradient mode the dataset config's own arguments chose.
  full_model = {'model.streams': STREAMS['all'],
                'model.stop_gradient': False}
  training = dict(common)
  if steps:
    training['num_train_steps'] = steps
  # No confirmation after the search: Table 3 itself trains the evolved and
  # the fixed weights over the same seeds.
  evolution = {**common, **full_model, 'evolution.confirm_seeds': 0}
  if evaluations:
    evolution['evolution.num_evaluations'] = evaluations
  if proxy_steps:
    evolution['evolution.proxy_steps'] = proxy_steps

  result = [sweep.Unit(config=dataset_config, overrides=evolution,
                       name=EVOLVE_UNIT, mode='evolve')]
  for seed in range(seeds):
    def unit(name, **overrides):
      return sweep.Unit(config=dataset_config,
                        overrides={**training, 'seed': seed, **overrides},
                        name=f'{name}_s{seed}')
    result.append(unit('rgb', **{'model.streams': STREAMS['rgb']}))
    for streams in ('sem', 'flow', 'all'):
      for grad in ('propagate', 'stop'):
        result.append(unit(f'{streams}_{grad}',
                           **{'model.streams': STREAMS[streams],
                              'model.stop_gradient': grad == 'stop'}))
    result.append(unit('merged_only', loss_weights=MERGED_ONLY_WEIGHTS,
                       **full_model))
    result.append(unit('uniform', loss_weights=base.UNIFORM_LOSS_WEIGHTS,
                       **full_model))
    result.append(unit(
        'evolved',
        loss_weights_file=f'{{workdir:{EVOLVE_UNIT}}}/best_weights.json',
        **full_model))
  return result
