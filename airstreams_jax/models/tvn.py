"""Tiny-Video-Network-style blocks, tower stages and the classification head.

Follows google-research/tiny_video_nets (`tiny_video_net.py`, `layers.py`), see
`shared/references.md` §3: a block is a spatial op, a temporal op, a 1x1
expansion, squeeze-excite, context gating and an optional skip. Tensors are
`[B, T, H, W, C]` throughout; there is no stem.

A tower is described by a list of block specs (plain dicts from the config, see
`BlockSpec`) so that widths, kernels and strides are recorded in the config that
produced a run.
"""

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from airstreams_jax.models import im2col_grad_conv
from airstreams_jax.models import pointwise_conv

SPATIAL_OPS = ('std', 'depth', 'maxpool', 'avgpool')
TEMPORAL_OPS = ('1d', 'maxpool', 'avgpool', 'none')

_conv_init = nn.initializers.he_normal()
# Clips at least this high get im2col gradients when asked
# (`AIRStreams.im2col_grads`): at 112 px the train step gained 17%, at 32 px
# nothing (0.535 s a step without, 0.543 s with) while its compile grew.
IM2COL_MIN_SIZE = 64


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One TVN block as the config describes it.

  Attributes:
    filters: F, the width of the spatial and temporal convolutions.
    spatial: 'std' (1x1 then kxk conv), 'depth' (1x1 then depthwise kxk),
      'maxpool' or 'avgpool'.
    kernel: spatial kernel size k; 1 makes the spatial op the identity.
    stride: spatial stride s of the first repeat.
    temporal: '1d' (k x 1 conv over time), 'maxpool', 'avgpool' or 'none'.
    temporal_kernel: temporal kernel size.
    temporal_stride: temporal stride of the first repeat.
    expand: the 1x1 expansion goes to max(F * expand, F) channels.
    se_ratio: squeeze-excite bottleneck ratio; 0 disables squeeze-excite.
    context_gating: whether to apply context gating.
    skip: whether to add the (projected) input when the frame count is kept.
    repeats: instances of the block; later ones use stride 1 and alternate the
      temporal op off, on, off, ...
  """
  filters: int
  spatial: str = 'std'
  kernel: int = 3
  stride: int = 1
  temporal: str = '1d'
  temporal_kernel: int = 3
  temporal_stride: int = 1
  expand: int = 2
  se_ratio: float = 0.25
  context_gating: bool = True
  skip: bool = True
  repeats: int = 1

  def __post_init__(self):
    if self.spatial not in SPATIAL_OPS:
      raise ValueError(f'Unknown spatial op {self.spatial!r}; use one of '
                       f'{SPATIAL_OPS}.')
    if self.temporal not in TEMPORAL_OPS:
      raise ValueError(f'Unknown temporal op {self.temporal!r}; use one of '
                       f'{TEMPORAL_OPS}.')

  @classmethod
  def from_config(cls, spec: Mapping[str, Any]) -> 'BlockSpec':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(spec) - known)
    if unknown:
      raise ValueError(f'Unknown tower block keys {unknown}; valid keys are '
                       f'{sorted(known)}.')
    return cls(**dict(spec))


def _batch_norm(train: bool, dtype: Any, scale_init=nn.initializers.ones,
                name=None) -> nn.BatchNorm:
  # TVN uses decay 0.9 and epsilon 1e-5.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, dtype=dtype, scale_init=scale_init,
                      name=name)


class TVNBlock(nn.Module):
  """A single instance of a TVN block (one repeat).

  `im2col_grads`: the strided spatial convolution and the temporal one
  compute their gradients as matrix products (`im2col_grad_conv`); same
  values, faster on XLA:CPU for large clips (the paper-scale train step 17%
  and then 7% faster), slower where cuDNN or TPU convolutions serve the
  plain gradients (`build_model` and `AIRStreams` choose).

  `pointwise_matmul`: the 1x1 convolutions run as matrix products
  (`pointwise_conv`); same parameters and values, faster on XLA:CPU.
  """
  spec: BlockSpec
  stride: int
  temporal_stride: int
  use_temporal: bool
  dtype: Any = jnp.float32
  im2col_grads: bool = False
  pointwise_matmul: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    spec = self.spec
    residual = x
    b, t, h, w, c = x.shape
    pointwise = pointwise_conv.conv_if(self.pointwise_matmul)

    # Spatial op, applied to every frame independently as 2-D convolutions
    # over [B*T, H, W, C]: XLA:CPU runs them ~1.6x faster than the equivalent
    # (1, k, k) 3-D convolutions.
    if spec.kernel > 1 or self.stride > 1:
      x = x.reshape((b * t, h, w, c))
      if spec.spatial in ('std', 'depth'):
        x = nn.Conv(spec.filters, (1, 1), use_bias=False, dtype=self.dtype,
                    kernel_init=_conv_init, conv_general_dilated=pointwise,
                    name='spatial_reduce')(x)
        if spec.spatial == 'std':
          x = nn.relu(_batch_norm(train, self.dtype)(x))
        groups = spec.filters if spec.spatial == 'depth' else 1
        x = nn.Conv(spec.filters, (spec.kernel, spec.kernel),
                    strides=(self.stride, self.stride), padding='SAME',
                    feature_group_count=groups, use_bias=False,
                    dtype=self.dtype, kernel_init=_conv_init,
                    # See `TVNBlock.im2col_grads`; a 1x1 kernel (a strided
                    # subsampling) is a matrix product.
                    conv_general_dilated=(
                        pointwise if spec.kernel == 1 else
                        im2col_grad_conv.conv
                        if self.im2col_grads and self.stride > 1 else None),
                    name='spatial_conv')(x)
        x = nn.relu(_batch_norm(train, self.dtype)(x))
      else:
        pool = nn.max_pool if spec.spatial == 'maxpool' else nn.avg_pool
        x = pool(x, (spec.kernel, spec.kernel), (self.stride, self.stride),
                 padding='SAME')
      x = x.reshape((b, t) + x.shape[1:])

    # Temporal op. A (k, 1) 2-D conv over [B, T, H*W, C] is ~25% faster on
    # XLA:CPU than the equivalent (k, 1, 1) 3-D conv (design.md §6).
    if self.use_temporal and t > 1 and spec.temporal != 'none' and (
        spec.temporal_kernel > 1 or self.temporal_stride > 1):
      _, _, h2, w2, c2 = x.shape
      x = x.reshape(b, t, h2 * w2, c2)
      window, strides = (spec.temporal_kernel, 1), (self.temporal_stride, 1)
      if spec.temporal == '1d':
        x = nn.Conv(spec.filters, window, strides=strides, padding='SAME',
                    use_bias=False, dtype=self.dtype, kernel_init=_conv_init,
                    # im2col: XLA:CPU computed its kernel gradient as a
                    # convolution whose window spans the whole clip, after
                    # transposing both operands: ~110 ms of each tower's
                    # first block in the paper-scale step (2.31 -> 2.16 s
                    # with im2col, alternating). `pointwise` changes only a
                    # 1-frame kernel (temporal_kernel=1).
                    conv_general_dilated=(
                        im2col_grad_conv.conv
                        if self.im2col_grads and spec.temporal_kernel > 1
                        else pointwise), name='temporal_conv')(x)
        x = nn.relu(_batch_norm(train, self.dtype)(x))
      else:
        pool = nn.max_pool if spec.temporal == 'maxpool' else nn.avg_pool
        x = pool(x, window, strides, padding='SAME')
      x = x.reshape(b, x.shape[1], h2, w2, x.shape[-1])

    # 1x1 expansion, BatchNorm without ReLU (the ReLU follows the skip).
    e = max(spec.filters * spec.expand, spec.filters)
    x = nn.Conv(e, (1, 1, 1), use_bias=False, dtype=self.dtype,
                kernel_init=_conv_init, conv_general_dilated=pointwise,
                name='expand')(x)
    x = _batch_norm(train, self.dtype)(x)

    # The squeeze and the gate act on [B, e] (then broadcast back): a matmul
    # of rank 2, which every backend (TFLite's batch_matmul too) takes.
    if spec.se_ratio > 0:
      s = jnp.mean(x, axis=(1, 2, 3))
      s = nn.relu(nn.Dense(max(int(e * spec.se_ratio), 8), dtype=self.dtype,
                           name='se_reduce')(s))
      s = nn.Dense(e, dtype=self.dtype, name='se_expand')(s)
      x = x * nn.sigmoid(s)[:, None, None, None, :]
    if spec.context_gating:
      g = jnp.mean(x, axis=(1, 2, 3))
      g = nn.Dense(e, dtype=self.dtype, name='gate')(g)
      x = x * nn.sigmoid(g)[:, None, None, None, :]

    # The skip needs matching frame counts; a temporal stride drops it.
    if spec.skip and x.shape[1] == t:
      if c != e or self.stride > 1:
        residual = nn.Conv(e, (1, 1, 1), strides=(1, self.stride, self.stride),
                           use_bias=False, dtype=self.dtype,
                           kernel_init=_conv_init,
                           conv_general_dilated=pointwise,
                           name='skip_proj')(residual)
        residual = _batch_norm(train, self.dtype)(residual)
      x = x + residual
    return nn.relu(x)


class TowerStage(nn.Module):
  """A run of consecutive TVN blocks (e.g. blocks 1-3 or 4-6 of a tower)."""
  blocks: Sequence[BlockSpec]
  dtype: Any = jnp.float32
  im2col_grads: bool = False  # See `TVNBlock`.
  pointwise_matmul: bool = False  # See `TVNBlock`.

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    for i, spec in enumerate(self.blocks):
      for r in range(spec.repeats):
        x = TVNBlock(spec,
                     stride=spec.stride if r == 0 else 1,
                     temporal_stride=spec.temporal_stride if r == 0 else 1,
                     # Repeats alternate the temporal op: on, off, on, ...
                     use_temporal=(r % 2 == 0),
                     dtype=self.dtype, im2col_grads=self.im2col_grads,
                     pointwise_matmul=self.pointwise_matmul,
                     name=f'block{i}_repeat{r}')(x, train)
    return x


class ClassificationHead(nn.Module):
  """Global spatio-temporal average, dropout, dense (TVN's head)."""
  num_classes: int
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    x = jnp.mean(x, axis=(1, 2, 3))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=nn.initializers.normal(0.01))(x)
    # Logits in float32 whatever the compute dtype: losses need the range.
    return logits.astype(jnp.float32)
