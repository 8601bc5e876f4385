r"""Parameters and FLOPs of an AIRStreams config, per stream and in total.

  python -m airstreams_jax.model_info --config=configs/synthetic.py \
      [--config.dataset.image_size=112] [--num_classes=51] \
      [--num_seg_classes=91]

Everything is per clip: batch 1, input `[1, dataset.num_frames,
dataset.image_size, dataset.image_size, 3]` uint8. Training counts the forward
and backward pass of the loss (every stream, every head, the segmentation
loss) in train mode as the trainer runs it: the heads whose λ in the config is
0 (the paper's flow and semantic heads) forward only, their losses not
differentiated; without the optimiser update. Inference counts
`model.apply(..., train=False, stream_heads=False)`, the pruned RGB-only
network whose merged head is the prediction. The report ends with four lines
for scripts:

  params: N
  train_gflops: X
  inference_gflops: Y
  inference_gmacs: Z

How the numbers are counted:
  * FLOPs are XLA's cost analysis of the HLO that JAX lowers
    (`jax.jit(f).lower(...).cost_analysis()`), before XLA's optimisation
    passes. Nothing is compiled, which keeps the report fast, and the count
    does not depend on a backend: XLA:CPU's fusion duplicates elementwise work
    (compiled, an unrolled 10-iteration flow layer counts 2.3x its HLO), and
    its compiled count of a loop body differs from that of the same body
    unrolled, so compiled counts cannot even be corrected for loops.
  * XLA counts the body of a loop once, not once per iteration (the flow
    layer's `lax.scan`, forward and backward). Each `scan` in the traced
    program is therefore costed on its own and added `length - 1` more times
    (`scan_correction`); `tests/test_model_info.py` checks the result against
    the same layer unrolled.
  * GMACs are the multiply-adds of the convolutions and matrix products
    (XLA's flops of those ops / 2). XLA leaves out kernel taps that fall on
    padding; `inference_macs_with_padding` counts them too, as fvcore-style
    counters (and most published video-model figures) do.
  * Parameters are the 'params' collection (BatchNorm statistics excluded).
  * The per-part breakdown costs each top-level sub-module of the model on its
    own, on the input shape and in the mode it sees inside the model; 'other'
    is the rest (preprocessing, the merge mean, resizing the segmentation
    logits, the losses).
  * The count is for one device: the program is traced without sharding.

The dataset is never built: the class counts come from the config (see
`default_class_counts`) or from --num_classes / --num_seg_classes.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start(tensorflow=False)

import dataclasses
import math
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.data import synthetic_generator
from airstreams_jax.models import airstreams
from airstreams_jax.models import flop_count
from airstreams_jax.training import losses

# Action classes when the config does not say (a Kinetics-400-sized head).
DEFAULT_NUM_CLASSES = 400
# Teacher classes when the config does not say: the synthetic oracle teacher's
# background, person, ball and box.
DEFAULT_NUM_SEG_CLASSES = len(synthetic_generator.CATEGORY_NAMES)

SUMMARY_KEYS = ('params', 'train_gflops', 'inference_gflops',
                'inference_gmacs')


def default_class_counts(dataset_config) -> Tuple[int, int]:
  """Action and teacher class counts of a dataset config, without building it.

  Args:
    dataset_config: `config.dataset`.

  Returns:
    (num_classes, num_seg_classes): `dataset.synthetic.num_classes` when the
    config has it, else `DEFAULT_NUM_CLASSES`; and `DEFAULT_NUM_SEG_CLASSES`,
    the classes of the synthetic teacher, the only teacher configs name so
    far.
  """
  synthetic = dataset_config.get('synthetic')
  num_classes = (synthetic.num_classes if synthetic is not None
                 else DEFAULT_NUM_CLASSES)
  return num_classes, DEFAULT_NUM_SEG_CLASSES


def count_params(params: Mapping[str, Any]) -> Dict[str, int]:
  """Parameter counts of a parameter tree.

  Args:
    params: the 'params' collection (arrays or `jax.ShapeDtypeStruct`s).

  Returns:
    The count of each top-level entry (for AIRStreams, each sub-module such as
    'flow_layer' or 'rgb_tower_lower') and their sum under 'total'.
  """
  counts = {name: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))
            for name, tree in params.items()}
  counts['total'] = sum(counts.values())
  return counts


def _abstract(tree: Any) -> Any:
  """Arrays and tracers to `jax.ShapeDtypeStruct`s; other leaves unchanged."""
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
      if hasattr(a, 'shape') and hasattr(a, 'dtype') else a, tree)


def _record_children(model: nn.Module, video: jax.ShapeDtypeStruct
                     ) -> Tuple[Any, Dict[str, Tuple[nn.Module, Any]]]:
  """Abstract variables, and each top-level sub-module with its input.

  Returns:
    (variables of `model` as `ShapeDtypeStruct`s, {name: (unbound copy of the
    sub-module, abstract input)} in call order). The model runs with every
    stream head, so every sub-module is recorded.
  """
  children = {}

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    # Direct children of the model only: their scope path is their name.
    if (context.method_name == '__call__' and module.scope is not None and
        len(module.scope.path) == 1):
      children[module.name] = (module.clone(parent=None), _abstract(args[0]))
    return next_fun(*args, **kwargs)

  def init(video):
    with nn.intercept_methods(interceptor):
      return model.init(jax.random.key(0), video, train=False)

  variables = jax.eval_shape(init, video)
  return variables, children


def _module_key(module: nn.Module) -> str:
  """Identifies a module's computation: its class and attributes, not name."""
  fields = tuple((f.name, getattr(module, f.name))
                 for f in dataclasses.fields(module)
                 if f.name not in ('parent', 'name'))
  return repr((type(module).__qualname__, fields))


def _module_cost(module: nn.Module, variables: Mapping[str, Any], x: Any, *,
                 train: bool, grad_params: bool, grad_input: bool
                 ) -> flop_count.Cost:
  """Cost of one sub-module, in inference or as a training forward+backward.

  In training the backward pass computes the gradients that the whole
  model's backward pass computes for this module: its parameters' (if
  `grad_params`) and its input's (if `grad_input`, i.e. if the input depends
  on parameters upstream). MACs are counted for inference only.
  """
  params = variables.get('params', {})
  batch_stats = variables.get('batch_stats', {})

  def forward(params, batch_stats, x):
    return module.apply({'params': params, 'batch_stats': batch_stats}, x,
                        train, rngs={'dropout': jax.random.key(0)},
                        mutable=['batch_stats'] if train else False)

  argnums = tuple(i for i, on in ((0, grad_params), (2, grad_input)) if on)
  if not train or not argnums:
    return flop_count.function_cost(forward, params, batch_stats, x,
                                    count_macs=not train)

  def forward_backward(params, batch_stats, x):
    def scalar(params, batch_stats, x):
      out, updates = forward(params, batch_stats, x)
      # The HLO is costed before optimisation, so the all-ones cotangent of
      # a sum is not folded away: the backward pass costs what it does
      # inside the model.
      return jnp.sum(out), updates
    return jax.grad(scalar, argnums, has_aux=True)(params, batch_stats, x)

  return flop_count.function_cost(forward_backward, params, batch_stats, x,
                                  count_macs=False)


def _parts(streams: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
  """Report rows: each part and the top-level sub-modules it sums."""
  parts = {}
  if 'flow' in streams:
    parts['flow_layer'] = ('flow_layer',)
  if 'semantic' in streams:
    parts['segmentation_net'] = ('segmentation_net',)
  for s in streams:
    parts[f'{s}_tower_lower'] = (f'{s}_tower_lower',)
  for s in streams:
    parts[f'{s}_tower_upper+head'] = (f'{s}_tower_upper', f'{s}_head')
  parts['merged_tower+head'] = ('merged_tower', 'merged_head')
  return parts


def _training_loss_grad(model: nn.Module, multi_label: bool,
                        untrained: Sequence[str]):
  """Forward+backward of the training loss, as in `steps.train_step` (the
  trainer's: `untrained` are the losses whose λ is 0)."""
  def loss_grad(params, batch_stats, batch, loss_weights):
    def loss_fn(params):
      outputs, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, batch['video'],
          train=True, rngs={'dropout': jax.random.key(0)},
          mutable=['batch_stats'])
      loss, _ = losses.total_loss(outputs, batch, loss_weights,
                                  multi_label=multi_label,
                                  untrained=untrained)
      return loss, updates['batch_stats']
    return jax.grad(loss_fn, has_aux=True)(params)
  return loss_grad


def _child_costs(model: nn.Module, variables: Mapping[str, Any],
                 children: Mapping[str, Tuple[nn.Module, Any]],
                 untrained: Sequence[str]
                 ) -> Dict[str, Tuple[flop_count.Cost,
                                      Optional[flop_count.Cost]]]:
  """{sub-module name: (training cost, inference cost or None)}; the tails
  (upper tower, head) of the `untrained` heads run forward only."""
  params = variables['params']
  # What the model's backward pass differentiates: the parameters of every
  # module the losses reach, and every input computed from parameters (all
  # but the clip).
  def reached(representation):
    return not model.gradient_cut(representation)

  flow_learns = (reached('flow') and
                 bool(jax.tree.leaves(params.get('flow_layer', {}))))
  grad_params = {'flow_layer': reached('flow')}
  grad_input = {'flow_layer': False, 'segmentation_net': False,
                'rgb_tower_lower': False, 'flow_tower_lower': flow_learns,
                'semantic_tower_lower': reached('semantic')}
  stream_tails = {f'{s}_{kind}' for s in airstreams.STREAMS
                  for kind in ('tower_upper', 'head')}
  for head in untrained:  # Their losses are not differentiated.
    for tail in (f'{head}_tower_upper', f'{head}_tower', f'{head}_head'):
      grad_params[tail] = grad_input[tail] = False
  # Same computation, same cost: the stream tails and the merged tail are the
  # same modules on the same input, so each is traced once.
  cache = {}
  costs = {}
  for name, (module, x) in children.items():
    child_vars = {k: v[name] for k, v in variables.items() if name in v}
    modes = []
    for train in (True, False):
      if not train and name in stream_tails:  # Inference skips them.
        modes.append(None)
        continue
      options = dict(train=train,
                     grad_params=train and grad_params.get(name, True),
                     grad_input=train and grad_input.get(name, True))
      key = (_module_key(module), repr(x), tuple(sorted(options.items())))
      if key not in cache:
        cache[key] = _module_cost(module, child_vars, x, **options)
      modes.append(cache[key])
    costs[name] = tuple(modes)
  return costs


def model_costs(config, num_classes: int, num_seg_classes: int
                ) -> Dict[str, Any]:
  """Parameters and per-clip FLOPs of the model that `config` describes.

  Nothing is compiled and no dataset is built.

  Args:
    config: an experiment config (uses `config.model` and the clip shape in
      `config.dataset`).
    num_classes: action classes.
    num_seg_classes: teacher classes, background included.

  Returns:
    A dict with
      'input_shape', 'num_classes', 'num_seg_classes';
      'params' (all), 'inference_params' (those the pruned inference uses);
      'train_flops', 'inference_flops', 'inference_macs' and
      'inference_macs_with_padding' of the whole model (see the module
      docstring);
      'parts': {name: {'modules', 'params', 'train_flops', 'inference_flops'
      and 'inference_macs' (both None if inference skips the part)}} for the
      flow layer, the segmentation net, each stream's lower tower, each
      stream's upper tower and head, the merged tower and head, and 'other'
      (the whole model minus the parts).

  Raises:
    errors.ConfigError: if the model rejects the config (streams, merge
      point, block specs, clip shape), before any counting.
  """
  d = config.dataset
  input_shape = (1, d.num_frames, d.image_size, d.image_size, 3)
  video = jax.ShapeDtypeStruct(input_shape, jnp.uint8)
  try:
    model = airstreams.build_model(config.model, num_classes=num_classes,
                                   num_seg_classes=num_seg_classes)
    variables, children = _record_children(model, video)
  except ValueError as e:  # The model's own checks of its configuration.
    raise errors.ConfigError(str(e)) from None
  params = variables['params']
  param_counts = count_params(params)

  multi_label = bool(config.model.get('multi_label', False))
  batch = {'video': video, 'label': (
      jax.ShapeDtypeStruct((1, num_classes), jnp.float32) if multi_label
      else jax.ShapeDtypeStruct((1,), jnp.int32))}
  if 'semantic' in model.streams:
    batch['masks'] = jax.ShapeDtypeStruct(input_shape[:-1], jnp.uint8)
  # The trainer's step: the losses with λ = 0 are not differentiated.
  try:
    weights = losses.loss_weights_vector(
        config.loss_weights, config.get('loss_weights_file', ''))
  except (OSError, ValueError) as e:  # A missing or malformed weights file.
    raise errors.ConfigError(f'config.loss_weights: {e}') from None
  untrained = losses.untrained_losses(weights)
  train = flop_count.function_cost(
      _training_loss_grad(model, multi_label, untrained), params,
      variables.get('batch_stats', {}), batch,
      jax.ShapeDtypeStruct((len(losses.LOSS_NAMES),), jnp.float32),
      count_macs=False)

  def infer(variables, video):
    return model.apply(variables, video, train=False,
                       stream_heads=False)['logits']['merged']
  inference = flop_count.function_cost(infer, variables, video)

  child_costs = _child_costs(model, variables, children, untrained)
  parts = {}
  for part, modules in _parts(model.streams).items():
    infer_costs = [child_costs[m][1] for m in modules]
    skipped = None in infer_costs
    parts[part] = {
        'modules': modules,
        'params': sum(param_counts.get(m, 0) for m in modules),
        'train_flops': sum(child_costs[m][0].flops for m in modules),
        'inference_flops': (None if skipped
                            else sum(c.flops for c in infer_costs)),
        'inference_macs': (None if skipped
                           else sum(c.macs for c in infer_costs)),
    }
  totals = {'params': param_counts['total'], 'train_flops': train.flops,
            'inference_flops': inference.flops,
            'inference_macs': inference.macs}
  parts['other'] = {'modules': (), **{
      key: total - sum(p[key] or 0 for p in parts.values())
      for key, total in totals.items()}}
  return {
      'input_shape': input_shape,
      'num_classes': num_classes,
      'num_seg_classes': num_seg_classes,
      **totals,
      'inference_params': sum(p['params'] for p in parts.values()
                              if p['inference_flops'] is not None),
      'inference_macs_with_padding': inference.macs_with_padding,
      'parts': parts,
  }


def summary(costs: Mapping[str, Any]) -> Dict[str, float]:
  """The four machine-readable figures, in `SUMMARY_KEYS` order."""
  return {'params': costs['params'],
          'train_gflops': costs['train_flops'] / 1e9,
          'inference_gflops': costs['inference_flops'] / 1e9,
          'inference_gmacs': costs['inference_macs'] / 1e9}


def format_report(costs: Mapping[str, Any]) -> str:
  """A table of `model_costs` that ends with the `SUMMARY_KEYS` lines."""
  def giga(value):
    return f'{"-":>14}' if value is None else f'{value / 1e9:>14.4f}'

  def row(name, entry):
    return (f'{name:<27}{entry["params"]:>12,}{giga(entry["train_flops"])}'
            f'{giga(entry["inference_flops"])}'
            f'{giga(entry["inference_macs"])}')

  shape = ', '.join(map(str, costs['input_shape']))
  lines = [
      f'Per clip: input [{shape}] uint8, {costs["num_classes"]} action '
      f'classes, {costs["num_seg_classes"]} segmentation classes.',
      'GFLOPs: XLA cost analysis of the lowered HLO, scan loops counted per '
      'iteration.',
      'GMACs: multiply-adds of convolutions and dots (their flops / 2).',
      '',
      f'{"part":<27}{"params":>12}{"train GFLOPs":>14}{"infer GFLOPs":>14}'
      f'{"infer GMACs":>14}',
  ]
  lines += [row(name, part) for name, part in costs['parts'].items()]
  lines += [
      row('total', costs),
      '',
      f'Inference uses {costs["inference_params"]:,} of the parameters: the '
      'single-stream tails and heads only serve training.',
      'Inference GMACs with kernel taps on padding (as fvcore counts): '
      f'{costs["inference_macs_with_padding"] / 1e9:.4f}',
      '',
  ]
  values = summary(costs)
  lines.append(f'params: {values["params"]}')
  lines += [f'{key}: {values[key]:.6g}' for key in SUMMARY_KEYS[1:]]
  return '\n'.join(lines)


def define_flags() -> None:
  """The command's flags (defined by `cli.run`: importing this module for its
  functions leaves the global flag registry alone; `airstreams_jax.main`
  defines its own --config)."""
  config_flags.DEFINE_config_file(
      'config', None, 'Experiment config file, e.g. configs/synthetic.py.',
      lock_config=True)
  flags.DEFINE_integer(
      'num_classes', None, 'Action classes. Default: '
      'config.dataset.synthetic.num_classes if the config has it, else '
      f'{DEFAULT_NUM_CLASSES}.', lower_bound=1)
  flags.DEFINE_integer(
      'num_seg_classes', None, 'Teacher classes, background included '
      '(e.g. 2 for the selfie teacher, 91 for COCO Mask R-CNN). Default: '
      f'{DEFAULT_NUM_SEG_CLASSES}, the synthetic teacher.', lower_bound=1)
  flags.mark_flag_as_required('config')


def main() -> None:
  """Prints the report of --config."""
  args = flags.FLAGS
  config = args.config
  num_classes, num_seg_classes = default_class_counts(config.dataset)
  if args.num_classes is not None:
    num_classes = args.num_classes
  if args.num_seg_classes is not None:
    num_seg_classes = args.num_seg_classes
  try:
    costs = model_costs(config, num_classes, num_seg_classes)
  except errors.ConfigError as e:
    sys.exit(f'error: {e}')
  print(format_report(costs))


if __name__ == '__main__':
  cli.run(main, define_flags, config_flag='config', console_logging=False)
