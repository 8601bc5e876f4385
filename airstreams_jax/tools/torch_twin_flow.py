"""The PyTorch twin's representation-flow layer, and its timing callables.

`RepresentationFlow` is `airstreams_jax.models.rep_flow` written as a PyTorch
user would: the same TV-L1 iterations, learnable θ, λ, τ and difference
kernels, with the TF reference's boundary semantics, the difference kernels
as `F.conv2d` on 1-channel images (as the official representation-flow
layer). `torch_twin.AIRStreams` uses it; `flow_callables` and
`official_flow_callables` are what the benchmark times against our layer.
"""

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError as e:  # An optional dependency of the benchmark only.
  raise ImportError(
      "airstreams_jax/tools/torch_twin_flow.py needs PyTorch: pip install -e "
      "'.[torch]'") from e

_EPS = 1e-12
_THETA, _LAMBDA, _TAU = 0.3, 0.15, 0.25


class RepresentationFlow(nn.Module):
  """TV-L1 representation flow on [B, C, T, H, W] clips -> [B, 2K, T, H, W].

  Channel mean (K = 1) or a 1x1 convolution to K channels, per-clip min-max
  normalisation to [0, 255], `num_iter` TV-L1 iterations linearised at u = 0
  on the frame pairs (t, t + 1), the last flow frame repeated.
  """

  def __init__(self, in_channels: int, num_iter: int = 20,
               bottleneck: int = 1):
    super().__init__()
    self.num_iter = num_iter
    self.bottleneck = bottleneck
    self.reduce = (None if bottleneck == 1 else
                   nn.Conv3d(in_channels, bottleneck, 1, bias=False))
    self.theta = nn.Parameter(torch.tensor(_THETA))
    self.lam = nn.Parameter(torch.tensor(_LAMBDA))
    self.tau = nn.Parameter(torch.tensor(_TAU))
    central, forward = [-0.5, 0.0, 0.5], [-1.0, 1.0]
    self.img_grad_x = nn.Parameter(torch.tensor(central).view(1, 1, 1, 3))
    self.img_grad_y = nn.Parameter(torch.tensor(central).view(1, 1, 3, 1))
    self.div_x = nn.Parameter(torch.tensor(forward).view(1, 1, 1, 2))
    self.div_y = nn.Parameter(torch.tensor(forward).view(1, 1, 2, 1))
    self.flow_grad_x = nn.Parameter(torch.tensor(forward).view(1, 1, 1, 2))
    self.flow_grad_y = nn.Parameter(torch.tensor(forward).view(1, 1, 2, 1))

  # The difference operators, on [N, 1, H, W] images, with the TF reference's
  # zero padding (see airstreams_jax/models/rep_flow.py).
  def _central_x(self, x):
    return F.conv2d(F.pad(x, (1, 1, 0, 0)), self.img_grad_x)

  def _central_y(self, x):
    return F.conv2d(F.pad(x, (0, 0, 1, 1)), self.img_grad_y)

  def _forward_x(self, u):
    return F.conv2d(F.pad(u, (0, 1, 0, 0)), self.flow_grad_x)

  def _forward_y(self, u):
    return F.conv2d(F.pad(u, (0, 0, 0, 1)), self.flow_grad_y)

  def _divergence(self, px, py):
    # The last entry dropped, the front zero-padded, a 2-tap convolution.
    dx = F.conv2d(F.pad(px[..., :-1], (1, 1, 0, 0)), self.div_x)
    dy = F.conv2d(F.pad(py[..., :-1, :], (0, 0, 1, 1)), self.div_y)
    return dx + dy

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, _, t, h, w = x.shape
    x = (x.mean(1, keepdim=True) if self.reduce is None else self.reduce(x))
    k = x.shape[1]
    mn = x.amin((1, 2, 3, 4), keepdim=True)
    mx = x.amax((1, 2, 3, 4), keepdim=True)
    span = mx - mn
    x = 255.0 * (x - mn) / torch.where(span > 0, span, torch.ones_like(span))
    # [B, K, T, H, W] -> frame pairs as [B * K * (T - 1), 1, H, W] images.
    i0 = x[:, :, :-1].reshape(-1, 1, h, w)
    i1 = x[:, :, 1:].reshape(-1, 1, h, w)

    theta = self.theta.abs() + _EPS
    l_t = self.lam * theta
    taut = self.tau / theta
    gx, gy = self._central_x(i1), self._central_y(i1)
    g2 = gx * gx + gy * gy + _EPS
    rho_c = i1 - i0
    has_grad = g2 > _EPS
    inv_g2 = torch.where(has_grad, 1.0 / torch.where(has_grad, g2, 1.0), 0.0)
    l_t_g2 = l_t * g2

    u1 = torch.zeros_like(i0)
    u2 = torch.zeros_like(i0)
    p11 = p12 = p21 = p22 = torch.zeros_like(i0)
    for _ in range(self.num_iter):
      rho = rho_c + gx * u1 + gy * u2 + _EPS
      c = torch.where(rho < -l_t_g2, l_t,
                      torch.where(rho > l_t_g2, -l_t, -rho * inv_g2))
      u1 = u1 + c * gx + theta * self._divergence(p11, p12)
      u2 = u2 + c * gy + theta * self._divergence(p21, p22)
      u1x, u1y = self._forward_x(u1), self._forward_y(u1)
      u2x, u2y = self._forward_x(u2), self._forward_y(u2)
      d1 = 1.0 + taut * torch.sqrt(u1x * u1x + u1y * u1y + _EPS)
      d2 = 1.0 + taut * torch.sqrt(u2x * u2x + u2y * u2y + _EPS)
      p11, p12 = (p11 + taut * u1x) / d1, (p12 + taut * u1y) / d1
      p21, p22 = (p21 + taut * u2x) / d2, (p22 + taut * u2y) / d2
    flow = torch.cat([u1.view(b, k, t - 1, h, w), u2.view(b, k, t - 1, h, w)],
                     1)
    return torch.cat([flow, flow[:, :, -1:]], 2)


def flow_layer_fwd_bwd(shape, num_iter: int, bottleneck: int):
  """(forward, forward+backward) callables of the twin's flow layer on a
  [B, T, H, W, C] input, the gradient w.r.t. parameters and input."""
  b, t, h, w, c = shape
  layer = RepresentationFlow(c, num_iter, bottleneck)
  x = torch.randn(b, c, t, h, w).contiguous(
      memory_format=torch.channels_last_3d).requires_grad_()

  def forward():
    with torch.no_grad():
      return layer(x)
  return forward, _forward_backward(layer, x)


def _forward_backward(layer: nn.Module, x: torch.Tensor):
  """A callable: the gradients of mean(layer(x)²) w.r.t. the layer's
  parameters and x."""
  def run():
    layer.zero_grad(set_to_none=True)
    x.grad = None
    loss = layer(x).square().mean()
    loss.backward()
    return loss.item()
  return run


# Factories that `airstreams_jax.tools.torch_worker.TorchWorker.build` calls in its
# child process: each returns (name -> no-argument callable, info).


def flow_callables(shape, num_iter: int, bottleneck: int):
  """'flow fwd' and 'flow fwd+bwd' of the twin's flow layer (see
  `flow_layer_fwd_bwd`)."""
  forward, forward_backward = flow_layer_fwd_bwd(shape, num_iter, bottleneck)
  return {'flow fwd': forward, 'flow fwd+bwd': forward_backward}, {}


def official_flow_callables(path: str, shape, num_iter: int,
                            bottleneck: int):
  """'official fwd+bwd': forward+backward of the official representation-
  flow layer (`FlowLayer` of the `rep_flow_layer.py` at `path`, from
  piergiaj/representation-flow-cvpr19) on a [B, C, T, H, W] input. It always
  reduces C to `bottleneck` channels with a 1x1 convolution, where ours
  takes the channel mean for K = 1."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('official_rep_flow', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  b, t, h, w, c = shape
  layer = module.FlowLayer(channels=c, bottleneck=bottleneck, n_iter=num_iter)
  x = torch.randn(b, c, t, h, w, requires_grad=True)
  return {'official fwd+bwd': _forward_backward(layer, x)}, {}
