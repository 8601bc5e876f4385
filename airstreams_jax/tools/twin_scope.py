"""What the PyTorch twin (`torch_twin.py`) implements of a model config, and
the one-line refusal of the rest.

Kept apart from the twin, without PyTorch: the benchmark's parent process
and the tests check a config here before any PyTorch process is started (or
where PyTorch is not installed), and the refusal is the same everywhere.
"""

from typing import Any, Mapping

from airstreams_jax import errors


def check_model_config(model_config: Mapping[str, Any]) -> None:
  """Raises errors.ConfigError, in one line naming the key and the fix,
  when `model_config` asks for a part the twin does not have.

  The twin writes the paper's layers only: the single-scale flow (one
  linearisation at u = 0), no pre-smoothing, no flow-of-flow. A timing or
  FLOP count of the twin beside a model it does not mirror would compare
  different networks without saying so.
  """
  flow = dict(model_config['flow'])
  for key in ('pyramid_levels', 'warps'):
    if flow.get(key, 1) != 1:  # Configs of runs before the pyramid lack it.
      raise errors.ConfigError(
          f'model.flow.{key}={flow[key]}: the PyTorch twin implements only '
          "the paper's single-scale flow layer; set "
          '--config.model.flow.pyramid_levels=1 --config.model.flow.warps=1 '
          'to compare with it.')
  if flow.get('presmooth_sigma', 0):
    raise errors.ConfigError(
        f'model.flow.presmooth_sigma={flow["presmooth_sigma"]}: the PyTorch '
        'twin has no pre-smoothing; set --config.model.flow.presmooth_sigma=0 '
        'to compare with it.')
  if dict(model_config.get('flow_of_flow', {})).get('enabled', False):
    raise errors.ConfigError(
        'model.flow_of_flow.enabled=True: the PyTorch twin has no '
        'flow-of-flow layer; set --config.model.flow_of_flow.enabled=False '
        'to compare with it.')
