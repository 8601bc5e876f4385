"""AIRStreams: RGB, learned-flow and semantic towers merged after block 3.

  RGB ───────────────────────► rgb tower 1..m ──┬─► tail ─► head: rgb
   ├─► RepresentationFlow ───► flow tower 1..m ─┼─► tail ─► head: flow
   └─► DRN-18 ─► seg logits ─► sem tower 1..m ──┼─► tail ─► head: semantic
                                                └─► mean ─► merged tail ─► head

`m` is `merge_after`. The input is RGB only: flow and segmentation are computed
from it inside the network, so inference needs no teacher and no flow tool.
"""

import functools
from typing import Any, Dict, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from airstreams_jax.models import drn
from airstreams_jax.models import flow_of_flow as flow_of_flow_lib
from airstreams_jax.models import rep_flow
from airstreams_jax.models import tvn

STREAMS = ('rgb', 'flow', 'semantic')


def preprocess_video(video: jnp.ndarray, dtype: Any) -> jnp.ndarray:
  """uint8 frames in [0, 255] to floats in [-1, 1]."""
  return (video.astype(jnp.float32) / 127.5 - 1.0).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def scale_gradient(x: jnp.ndarray, scale: float) -> jnp.ndarray:
  """Identity in the forward pass; multiplies the gradient by `scale`."""
  del scale
  return x


def _scale_gradient_fwd(x, scale):
  del scale
  return x, None


def _scale_gradient_bwd(scale, residual, g):
  del residual
  return (g * jnp.asarray(scale, g.dtype),)


scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


class AIRStreams(nn.Module):
  """The multi-stream action recognition network.

  Attributes:
    num_classes: action classes.
    num_seg_classes: teacher classes, background included.
    tower: block specs of one tower (blocks 1..len); every stream uses the same
      structure so the features at the merge point have the same shape.
    streams: a non-empty subset of `STREAMS`.
    merge_after: the merged tower starts after this block (1..len(tower)-1).
    stop_gradient: if True, the action losses do not reach the representation
      networks named in `stop_gradient_at` (the paper's Table 2 ablation).
    stop_gradient_at: which of 'flow' and 'semantic' `stop_gradient` applies
      to; both by default.
    grad_scale: what the action losses' gradient is multiplied by where it
      enters the representations of `stop_gradient_at`: 1 propagates it (the
      paper's "propagate"), 0 stops it (as `stop_gradient=True`), values in
      between trace the curve between the two columns of Table 2. The
      forward pass is unchanged.
    flow: keyword arguments of `rep_flow.RepresentationFlow`.
    flow_of_flow: None, or the `features` and second-layer keyword arguments
      of a `flow_of_flow.FlowOfFlow` that then replaces the single flow layer
      (`flow` configures its first layer).
    seg_widths: DRN-18 stage widths.
    seg_output_stride: DRN-18 output stride.
    seg_decoder_features: 0, or the width of the DRN's upsampling head.
    dropout_rate: dropout before each head.
    dtype: compute dtype.
    im2col_grads: for clips of at least `tvn.IM2COL_MIN_SIZE` pixels, the
      towers' strided spatial convolutions and their temporal ones compute
      their gradients as matrix products (`tvn.TVNBlock`), and the DRN's max
      pool its gradient elementwise (`max_pool`); `build_model` turns it on
      for the CPU backend.
    pointwise_matmul: the towers' and the DRN's 1x1 convolutions run as
      matrix products (`pointwise_conv`); `build_model` turns it on for the
      CPU backend.
  """
  num_classes: int
  num_seg_classes: int
  tower: Sequence[tvn.BlockSpec]
  streams: Sequence[str] = STREAMS
  merge_after: int = 3
  stop_gradient: bool = False
  stop_gradient_at: Sequence[str] = ('flow', 'semantic')
  grad_scale: float = 1.0
  flow: Optional[Mapping[str, Any]] = None
  flow_of_flow: Optional[Mapping[str, Any]] = None
  seg_widths: Sequence[int] = (64, 128, 256, 512)
  seg_output_stride: int = 16
  seg_decoder_features: int = 0
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  im2col_grads: bool = False
  pointwise_matmul: bool = False

  def gradient_cut(self, representation: str) -> bool:
    """Whether the action losses do not reach this representation's net."""
    return representation in self.stop_gradient_at and (
        self.stop_gradient or self.grad_scale == 0.0)

  def _stream_inputs(self, x: jnp.ndarray, train: bool,
                     outputs: Dict[str, jnp.ndarray],
                     im2col: bool) -> Dict[str, jnp.ndarray]:
    """Computes each stream's input representation from the RGB clip
    (`im2col`: the clip is large enough for `im2col_grads`)."""
    def maybe_stop(representation, value):
      if self.gradient_cut(representation):
        return jax.lax.stop_gradient(value)
      if representation in self.stop_gradient_at and self.grad_scale != 1.0:
        return scale_gradient(value, self.grad_scale)
      return value

    inputs = {}
    if 'rgb' in self.streams:
      inputs['rgb'] = x
    if 'flow' in self.streams:
      if self.flow_of_flow is None:
        flow_layer = rep_flow.RepresentationFlow(
            **dict(self.flow or {}), dtype=self.dtype, name='flow_layer')
      else:
        second = dict(self.flow_of_flow)
        flow_layer = flow_of_flow_lib.FlowOfFlow(
            first=self.flow, features=second.pop('features', 16),
            second=second, dtype=self.dtype, name='flow_layer')
      flow = flow_layer(x, train)
      outputs['flow'] = flow
      inputs['flow'] = maybe_stop('flow', flow)
    if 'semantic' in self.streams:
      b, t, h, w, c = x.shape
      seg = drn.DilatedResNet18(
          self.num_seg_classes, widths=tuple(self.seg_widths),
          output_stride=self.seg_output_stride,
          decoder_features=self.seg_decoder_features, dtype=self.dtype,
          pointwise_matmul=self.pointwise_matmul,
          elementwise_pool_grads=im2col,
          name='segmentation_net')(x.reshape(b * t, h, w, c), train)
      # Back to the frame resolution: the semantic tower mirrors the RGB tower
      # and the pixelwise loss compares with masks at the frame resolution.
      seg = jax.image.resize(seg, (b * t, h, w, seg.shape[-1]), 'bilinear')
      seg = seg.reshape(b, t, h, w, -1)
      outputs['seg_logits'] = seg
      inputs['semantic'] = maybe_stop('semantic', seg).astype(self.dtype)
    return inputs

  @nn.compact
  def __call__(self, video: jnp.ndarray, *, train: bool,
               stream_heads: bool = True) -> Dict[str, Any]:
    """Runs the network.

    Args:
      video: `[B, T, H, W, 3]` uint8 RGB clips.
      train: training mode (batch statistics, dropout).
      stream_heads: whether to run the single-stream tails and heads. They
        only serve their training losses; inference skips them.

    Returns:
      A dict with 'logits' (a dict of `[B, num_classes]` logits for 'merged'
      and, with `stream_heads`, each stream), plus 'flow' `[B, T, H, W, 2K]`
      and 'seg_logits' `[B, T, H, W, num_seg_classes]` for the streams present.
    """
    unknown = sorted(set(self.streams) - set(STREAMS))
    if not self.streams or unknown:
      raise ValueError(f'streams must be a non-empty subset of {STREAMS}, got '
                       f'{tuple(self.streams)}.')
    if not 1 <= self.merge_after < len(self.tower):
      raise ValueError(f'merge_after must be in [1, {len(self.tower) - 1}] for '
                       f'a {len(self.tower)}-block tower, got '
                       f'{self.merge_after}.')
    im2col = self.im2col_grads and video.shape[2] >= tvn.IM2COL_MIN_SIZE
    lower = tuple(self.tower[:self.merge_after])
    upper = tuple(self.tower[self.merge_after:])
    stage = functools.partial(tvn.TowerStage, dtype=self.dtype,
                              im2col_grads=im2col,
                              pointwise_matmul=self.pointwise_matmul)
    outputs = {}
    inputs = self._stream_inputs(preprocess_video(video, self.dtype), train,
                                 outputs, im2col)
    features = {
        s: stage(lower, name=f'{s}_tower_lower')(inputs[s], train)
        for s in STREAMS if s in inputs}

    merged = sum(features.values()) / len(features)
    merged = stage(upper, name='merged_tower')(merged, train)
    logits = {'merged': tvn.ClassificationHead(
        self.num_classes, self.dropout_rate, self.dtype,
        name='merged_head')(merged, train)}
    if stream_heads:
      for s, f in features.items():
        f = stage(upper, name=f'{s}_tower_upper')(f, train)
        logits[s] = tvn.ClassificationHead(
            self.num_classes, self.dropout_rate, self.dtype,
            name=f'{s}_head')(f, train)
    outputs['logits'] = logits
    return outputs


def _flow_of_flow_kwargs(model_config) -> Optional[Dict[str, Any]]:
  options = model_config.get('flow_of_flow')
  if not options or not options.enabled:
    return None
  return {k: v for k, v in options.items() if k != 'enabled'}


# ('auto', the form elsewhere, the form on the CPU backend).
CONV_GRADIENTS = ('auto', 'xla', 'im2col')
POINTWISE_CONVS = ('auto', 'conv', 'matmul')


def _form(model_config, key: str, choices: Sequence[str]) -> str:
  """`model_config[key]` (one of `choices`, 'auto' when missing) with
  'auto' resolved for the default backend."""
  value = model_config.get(key, 'auto')
  if value not in choices:
    raise ValueError(f'config.model.{key}={value!r} is unknown; use one of '
                     f'{choices}.')
  if value == 'auto':
    value = choices[2] if jax.default_backend() == 'cpu' else choices[1]
  return value


def build_model(model_config, *, num_classes: int,
                num_seg_classes: int) -> AIRStreams:
  """Builds `AIRStreams` from the `config.model` ConfigDict.

  `model.conv_gradients` 'auto' (the default) computes the gradients of the
  towers' strided and temporal convolutions as matrix products and the
  DRN's max pool's elementwise on the CPU backend ('im2col', where
  XLA:CPU's own forms are slow) and in XLA's own forms elsewhere ('xla');
  see `tvn.TVNBlock` and `max_pool`. `model.pointwise_convs` 'auto' (the default)
  runs the 1x1 convolutions as matrix products on the CPU backend
  ('matmul', `pointwise_conv`) and as convolutions elsewhere ('conv', not
  measured there). Neither changes the parameters.
  """
  dtype = jnp.dtype(model_config.dtype)
  conv_gradients = _form(model_config, 'conv_gradients', CONV_GRADIENTS)
  pointwise_convs = _form(model_config, 'pointwise_convs', POINTWISE_CONVS)
  return AIRStreams(
      num_classes=num_classes,
      num_seg_classes=num_seg_classes,
      tower=tuple(tvn.BlockSpec.from_config(b) for b in model_config.tower),
      streams=tuple(model_config.streams),
      merge_after=model_config.merge_after,
      stop_gradient=model_config.stop_gradient,
      stop_gradient_at=tuple(model_config.stop_gradient_at),
      grad_scale=model_config.get('grad_scale', 1.0),
      flow=dict(model_config.flow),
      flow_of_flow=_flow_of_flow_kwargs(model_config),
      seg_widths=tuple(model_config.seg.widths),
      seg_output_stride=model_config.seg.output_stride,
      seg_decoder_features=model_config.seg.get('decoder_features', 0),
      dropout_rate=model_config.dropout_rate,
      dtype=dtype,
      im2col_grads=conv_gradients == 'im2col',
      pointwise_matmul=pointwise_convs == 'matmul')
