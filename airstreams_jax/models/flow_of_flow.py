"""The flow of the flow: a second representation-flow layer on the first
one's output (Piergiovanni & Ryoo's "flow-of-flow")."""

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from airstreams_jax.models import rep_flow

Array = jax.Array
Dtype = Any


class FlowOfFlow(nn.Module):
  """The flow of the flow: two representation-flow layers and a conv between.

  Piergiovanni & Ryoo stack a second flow layer on the first one's output
  ("flow-of-flow"), which they found needs a convolution in between: the
  first flow field [B, T, H, W, 2K] goes through a 3x3 conv (per frame) to
  `features` channels, BatchNorm and ReLU, and the second layer computes the
  flow of those features. The first layer's last frame repeats its frame
  T - 2, so the second layer runs on the T - 1 genuine frames (needs T >= 3)
  and its last frame is repeated twice to give T frames back.

  Attributes:
    first: keyword arguments of the first `RepresentationFlow`.
    second: keyword arguments of the second `RepresentationFlow`.
    features: channels of the conv between the two layers.
    dtype: compute dtype.
  """
  first: Optional[Mapping[str, Any]] = None
  second: Optional[Mapping[str, Any]] = None
  features: int = 16
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """Returns the second layer's flow [B, T, H, W, 2K'] of clips x."""
    if x.ndim != 5 or x.shape[1] < 3:
      raise ValueError('Flow-of-flow needs clips [B, T, H, W, C] with T >= 3, '
                       f'got shape {x.shape}.')
    flow = rep_flow.RepresentationFlow(**dict(self.first or {}), dtype=self.dtype,
                              name='flow')(x, train)
    b, t, h, w, c = flow.shape
    y = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype,
                name='conv')(flow.reshape(b * t, h, w, c))
    y = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5, dtype=self.dtype, name='bn')(y)
    y = nn.relu(y).reshape(b, t, h, w, self.features)
    flow2 = rep_flow.RepresentationFlow(**dict(self.second or {}), dtype=self.dtype,
                               name='flow_of_flow')(y[:, :-1], train)
    return jnp.concatenate([flow2, flow2[:, -1:]], axis=1)
