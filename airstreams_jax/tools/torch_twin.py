"""AIRStreams in idiomatic PyTorch: the twin that `airstreams_jax.tools.benchmark` times
side by side with the JAX model.

  pip install -e '.[torch]'   # torch==2.13.0, CPU

Same architecture as `airstreams_jax.models` for a given experiment config:
the TVN tower specs (spatial 1xkxk and temporal kx1x1 convolutions, 1x1
expansion, squeeze-excite, context gating, skips), the per-frame Dilated
ResNet-18 (output stride and optional upsampling head), the representation-
flow layer (the same TV-L1 iterations, learnable θ, λ, τ and difference
kernels, the TF reference's boundary semantics), the three lower towers, the
merge by averaging, the merged and per-stream upper towers and heads, and the
loss (the five weighted terms, the pixelwise segmentation loss on logits
upsampled to the frame). It is written the way a PyTorch user would write it:
`nn.Conv3d`/`nn.Conv2d` modules in NCTHW/NCHW tensors stored channels-last
(`torch.channels_last_3d`/`channels_last`), the flow layer's difference
kernels as `F.conv2d` on 1-channel images (as the official representation-
flow layer), eager autograd, `torch.optim.AdamW` and
`clip_grad_norm_`. Weights are not shared with the JAX model: only the
speed and the FLOPs are compared (`flop_count` counts convolutions and
matrix products, as `model_info`'s multiply-adds with padding).

Its SAME-padding of even-sized stride-2 convolutions is symmetric (PyTorch's
`padding=k // 2`) where XLA pads one pixel more at the end; output sizes and
FLOPs are the same.
"""

from typing import Any, Dict, Mapping, Sequence

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError as e:  # An optional dependency of the benchmark only.
  raise ImportError(
      "airstreams_jax/tools/torch_twin.py needs PyTorch: pip install -e "
      "'.[torch]'") from e

from airstreams_jax.tools import torch_twin_flow
from airstreams_jax.tools import twin_scope


def _bn3d(channels: int, zero_init: bool = False) -> nn.BatchNorm3d:
  # Flax momentum 0.9 is PyTorch momentum 0.1.
  bn = nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)
  if zero_init:
    nn.init.zeros_(bn.weight)
  return bn


def _bn2d(channels: int, zero_init: bool = False) -> nn.BatchNorm2d:
  bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
  if zero_init:
    nn.init.zeros_(bn.weight)
  return bn


class TVNBlock(nn.Module):
  """One repeat of a TVN block on [B, C, T, H, W] (`tvn.TVNBlock`)."""

  def __init__(self, spec: Mapping[str, Any], in_channels: int, stride: int,
               temporal_stride: int, use_temporal: bool, num_frames: int):
    super().__init__()
    f = spec['filters']
    kernel = spec.get('kernel', 3)
    spatial = spec.get('spatial', 'std')
    temporal = spec.get('temporal', '1d')
    tk = spec.get('temporal_kernel', 3)
    e = max(f * spec.get('expand', 2), f)
    se_ratio = spec.get('se_ratio', 0.25)
    layers, channels = [], in_channels
    if kernel > 1 or stride > 1:
      if spatial in ('std', 'depth'):
        layers += [nn.Conv3d(channels, f, 1, bias=False)]
        if spatial == 'std':
          layers += [_bn3d(f), nn.ReLU()]
        layers += [nn.Conv3d(f, f, (1, kernel, kernel), (1, stride, stride),
                             (0, kernel // 2, kernel // 2), bias=False,
                             groups=f if spatial == 'depth' else 1),
                   _bn3d(f), nn.ReLU()]
        channels = f
      else:
        pool = nn.MaxPool3d if spatial == 'maxpool' else nn.AvgPool3d
        layers += [pool((1, kernel, kernel), (1, stride, stride),
                        (0, kernel // 2, kernel // 2))]
    if use_temporal and num_frames > 1 and temporal != 'none' and (
        tk > 1 or temporal_stride > 1):
      if temporal == '1d':
        layers += [nn.Conv3d(channels, f, (tk, 1, 1), (temporal_stride, 1, 1),
                             (tk // 2, 0, 0), bias=False), _bn3d(f), nn.ReLU()]
        channels = f
      else:
        pool = nn.MaxPool3d if temporal == 'maxpool' else nn.AvgPool3d
        layers += [pool((tk, 1, 1), (temporal_stride, 1, 1), (tk // 2, 0, 0))]
    layers += [nn.Conv3d(channels, e, 1, bias=False), _bn3d(e)]
    self.body = nn.Sequential(*layers)
    self.se = (nn.Sequential(nn.Linear(e, max(int(e * se_ratio), 8)),
                             nn.ReLU(), nn.Linear(max(int(e * se_ratio), 8), e))
               if se_ratio > 0 else None)
    self.gate = (nn.Linear(e, e) if spec.get('context_gating', True)
                 else None)
    self.skip = spec.get('skip', True) and temporal_stride == 1
    self.proj = None
    if self.skip and (in_channels != e or stride > 1):
      self.proj = nn.Sequential(
          nn.Conv3d(in_channels, e, 1, (1, stride, stride), bias=False),
          _bn3d(e))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    residual = x
    x = self.body(x)
    if self.se is not None:
      x = x * torch.sigmoid(self.se(x.mean((2, 3, 4))))[:, :, None, None, None]
    if self.gate is not None:
      x = x * torch.sigmoid(self.gate(x.mean((2, 3, 4))))[:, :, None, None,
                                                          None]
    if self.skip:
      x = x + (residual if self.proj is None else self.proj(residual))
    return F.relu(x)


def _tower_stage(specs: Sequence[Mapping[str, Any]], in_channels: int,
                 num_frames: int) -> nn.Sequential:
  blocks = []
  for spec in specs:
    for r in range(spec.get('repeats', 1)):
      block = TVNBlock(spec, in_channels,
                       stride=spec.get('stride', 1) if r == 0 else 1,
                       temporal_stride=(spec.get('temporal_stride', 1)
                                        if r == 0 else 1),
                       use_temporal=r % 2 == 0, num_frames=num_frames)
      blocks.append(block)
      in_channels = max(spec['filters'] * spec.get('expand', 2),
                        spec['filters'])
  return nn.Sequential(*blocks)


def _tower_width(specs: Sequence[Mapping[str, Any]]) -> int:
  return max(specs[-1]['filters'] * specs[-1].get('expand', 2),
             specs[-1]['filters'])


class Head(nn.Module):
  """Global average, dropout, linear."""

  def __init__(self, channels: int, num_classes: int, dropout: float):
    super().__init__()
    self.dropout = nn.Dropout(dropout)
    self.linear = nn.Linear(channels, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.linear(self.dropout(x.mean((2, 3, 4))))


class BasicBlock(nn.Module):

  def __init__(self, in_channels: int, filters: int, stride: int,
               dilation: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, dilation,
                           dilation, bias=False)
    self.bn1 = _bn2d(filters)
    self.conv2 = nn.Conv2d(filters, filters, 3, 1, dilation, dilation,
                           bias=False)
    self.bn2 = _bn2d(filters, zero_init=True)
    self.proj = None
    if in_channels != filters or stride != 1:
      self.proj = nn.Sequential(
          nn.Conv2d(in_channels, filters, 1, stride, bias=False),
          _bn2d(filters))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


def _conv_bn_relu(in_channels, out_channels, kernel):
  return nn.Sequential(
      nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2,
                bias=False), _bn2d(out_channels), nn.ReLU())


class DilatedResNet18(nn.Module):
  """Per-frame DRN-18 (`drn.DilatedResNet18`) on [N, 3, H, W] images."""
  _LATE_STAGES = {32: ((2, 1), (2, 1)), 16: ((2, 1), (1, 2)),
                  8: ((1, 2), (1, 4))}

  def __init__(self, num_classes: int, widths=(64, 128, 256, 512),
               output_stride: int = 16, decoder_features: int = 0):
    super().__init__()
    self.stem = nn.Sequential(
        nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), _bn2d(widths[0]),
        nn.ReLU())
    self.pool = nn.MaxPool2d(3, 2, 1)
    stages = ((1, 1), (2, 1)) + self._LATE_STAGES[output_stride]
    self.stages = nn.ModuleList()
    channels = widths[0]
    for width, (stride, dilation) in zip(widths, stages):
      self.stages.append(nn.Sequential(
          BasicBlock(channels, width, stride, dilation),
          BasicBlock(width, width, 1, dilation)))
      channels = width
    self.decoder_features = f = decoder_features
    if f:
      self.decoder_in = _conv_bn_relu(channels, f, 1)
      skip_channels = (widths[0], widths[0], 3)  # conv2_x, stem, image.
      self.decoder_skips = nn.ModuleList(
          _conv_bn_relu(c, max(f // 2, 1), 1) for c in skip_channels)
      self.decoder_fuse = nn.ModuleList(
          _conv_bn_relu(f + max(f // 2, 1), f, 3) for _ in skip_channels)
      channels = f
    self.classifier = nn.Conv2d(channels, num_classes, 1)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = self.stem(images)
    skips = [x]
    x = self.pool(x)
    for i, stage in enumerate(self.stages):
      x = stage(x)
      if i == 0:
        skips.append(x)
    if self.decoder_features:
      x = self.decoder_in(x)
      for skip, skip_conv, fuse in zip(skips[::-1] + [images],
                                       self.decoder_skips, self.decoder_fuse):
        x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear',
                          align_corners=False)
        x = fuse(torch.cat([x, skip_conv(skip)], 1))
    return self.classifier(x)


class AIRStreams(nn.Module):
  """The three-stream network (`airstreams.AIRStreams`), NCTHW inside."""

  def __init__(self, model_config, num_classes: int, num_seg_classes: int,
               num_frames: int):
    super().__init__()
    tower = [dict(b) for b in model_config.tower]
    self.streams = tuple(model_config.streams)
    m = model_config.merge_after
    lower, upper = tower[:m], tower[m:]
    flow = dict(model_config.flow)
    in_channels = {'rgb': 3, 'flow': 2 * flow.get('bottleneck', 1),
                   'semantic': num_seg_classes}
    twin_scope.check_model_config(model_config)
    if 'flow' in self.streams:
      self.flow_layer = torch_twin_flow.RepresentationFlow(
          3, flow.get('num_iter', 20), flow.get('bottleneck', 1))
    if 'semantic' in self.streams:
      seg = dict(model_config.seg)
      self.segmentation_net = DilatedResNet18(
          num_seg_classes, tuple(seg['widths']), seg['output_stride'],
          seg.get('decoder_features', 0))
    self.lower = nn.ModuleDict({
        s: _tower_stage(lower, in_channels[s], num_frames)
        for s in self.streams})
    width = _tower_width(lower)
    dropout = model_config.dropout_rate
    self.merged_tower = _tower_stage(upper, width, num_frames)
    self.merged_head = Head(_tower_width(upper), num_classes, dropout)
    self.upper = nn.ModuleDict({
        s: _tower_stage(upper, width, num_frames) for s in self.streams})
    self.heads = nn.ModuleDict({
        s: Head(_tower_width(upper), num_classes, dropout)
        for s in self.streams})

  def forward(self, video: torch.Tensor, stream_heads: bool = True
              ) -> Dict[str, Any]:
    """`video`: [B, 3, T, H, W] uint8 (channels-last 3-D storage)."""
    x = video.float() / 127.5 - 1.0
    b, _, t, h, w = x.shape
    inputs, outputs = {}, {}
    if 'rgb' in self.streams:
      inputs['rgb'] = x
    if 'flow' in self.streams:
      inputs['flow'] = self.flow_layer(x)
    if 'semantic' in self.streams:
      frames = x.transpose(1, 2).reshape(b * t, 3, h, w).contiguous(
          memory_format=torch.channels_last)
      seg = self.segmentation_net(frames)
      seg = F.interpolate(seg, size=(h, w), mode='bilinear',
                          align_corners=False)
      outputs['seg_logits'] = seg  # [B * T, classes, H, W].
      inputs['semantic'] = seg.view(b, t, -1, h, w).transpose(1, 2).contiguous(
          memory_format=torch.channels_last_3d)
    features = {s: self.lower[s](inputs[s]) for s in self.streams}
    merged = sum(features.values()) / len(features)
    logits = {'merged': self.merged_head(self.merged_tower(merged))}
    if stream_heads:
      for s, f in features.items():
        logits[s] = self.heads[s](self.upper[s](f))
    outputs['logits'] = logits
    return outputs


LOSS_NAMES = ('rgb', 'flow', 'semantic', 'merged', 'interm')


def total_loss(outputs, labels, masks, loss_weights: Sequence[float]):
  """The weighted sum of the head losses and the segmentation loss.

  A term whose weight is 0 is computed but detached, as ours
  (`losses.total_loss(untrained=...)`): autograd skips the heads only it
  reaches rather than back-propagating zeros through them.
  """
  weights = dict(zip(LOSS_NAMES, loss_weights))

  def weighted(name, term):
    return weights[name] * (term if weights[name] else term.detach())

  loss = sum(weighted(name, F.cross_entropy(logits, labels))
             for name, logits in outputs['logits'].items())
  if 'seg_logits' in outputs:
    loss = loss + weighted('interm', F.cross_entropy(
        outputs['seg_logits'], masks.flatten(0, 1).long()))
  return loss


def channels_last(model: nn.Module) -> nn.Module:
  """Stores every convolution kernel channels-last (3-D and 2-D alike:
  `Module.to(memory_format=...)` takes one format for the whole model)."""
  for module in model.modules():
    if isinstance(module, (nn.Conv3d, nn.Conv2d)):
      fmt = (torch.channels_last_3d if isinstance(module, nn.Conv3d)
             else torch.channels_last)
      module.weight.data = module.weight.data.contiguous(memory_format=fmt)
  return model


def to_torch_video(video) -> torch.Tensor:
  """[B, T, H, W, 3] uint8 (NumPy) -> [B, 3, T, H, W], channels-last 3-D."""
  return torch.from_numpy(video).permute(0, 4, 1, 2, 3)  # A view: NDHWC.


class TrainStep:
  """One AdamW step (clipped at global norm 1) of the twin on a fixed batch."""

  def __init__(self, config, num_classes: int, num_seg_classes: int, batch,
               loss_weights: Sequence[float]):
    d = config.dataset
    self.model = channels_last(AIRStreams(config.model, num_classes,
                                          num_seg_classes, d.num_frames))
    self.model.train()
    opt = config.optimizer
    self.optimizer = torch.optim.AdamW(
        self.model.parameters(), lr=opt.learning_rate,
        weight_decay=opt.weight_decay)
    self.clip = opt.grad_clip_norm
    self.video = to_torch_video(batch['video'])
    self.labels = torch.from_numpy(batch['label']).long()
    self.masks = torch.from_numpy(batch['masks'])
    self.loss_weights = tuple(float(w) for w in loss_weights)

  def __call__(self) -> float:
    self.model.train()  # Inference may share the model (`inference_fn`).
    self.optimizer.zero_grad(set_to_none=True)
    loss = total_loss(self.model(self.video), self.labels, self.masks,
                      self.loss_weights)
    loss.backward()
    if self.clip > 0:
      nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
    self.optimizer.step()
    return loss.item()


def inference_fn(model: AIRStreams, video):
  """RGB-only inference (no stream heads, eval mode, no autograd)."""
  video = to_torch_video(video)

  def run():
    # At every call: a train step on the same model switches it back.
    model.eval()
    with torch.inference_mode():
      return model(video, stream_heads=False)['logits']['merged']
  return run


def flop_count(fn) -> int:
  """FLOPs of convolutions and matrix products in `fn()` (PyTorch's
  counter: 2 per multiply-add, padding taps included)."""
  from torch.utils import flop_counter  # pylint: disable=g-import-not-at-top
  counter = flop_counter.FlopCounterMode(display=False)
  with counter:
    fn()
  return counter.get_total_flops()


def parameter_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def describe() -> str:
  return (f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{torch.backends.cpu.get_cpu_capability()}')


# Factories that `airstreams_jax.tools.torch_worker.TorchWorker.build` calls in its
# child process: each returns (name -> no-argument callable, info).


def model_callables(config, num_classes: int, num_seg_classes: int, batch,
                    loss_weights: Sequence[float]):
  """'train' (one AdamW step) and 'infer' (RGB-only inference) of the twin
  of `config`'s model on `batch`; info: the library, the parameter count and
  multiply-adds per clip (forward of training, inference)."""
  step = TrainStep(config, num_classes, num_seg_classes, batch, loss_weights)
  infer = inference_fn(step.model, batch['video'])
  batch_size = len(batch['label'])
  info = {
      'describe': describe(),
      'params': parameter_count(step.model),
      'inference_gmacs_per_clip': flop_count(infer) / 2e9 / batch_size,
  }
  step.model.train()  # As the train step runs it (infer set eval mode).
  info['forward_gmacs_per_clip'] = flop_count(
      lambda: step.model(step.video)) / 2e9 / batch_size
  return {'train': step, 'infer': infer}, info

