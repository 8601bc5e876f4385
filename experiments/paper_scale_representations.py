"""Representation metrics of the paper-scale model on generated 112-px clips.

Question (GitHub issue): for the paper-scale configs (8 frames of 112x112,
DRN-18 at output stride 16, so 7x7 logits), what do the representation
metrics say on a generated clip set at that size, and can the paper's output
stride segment person-sized objects there?

Usage (from the repository root):
  python -m experiments.paper_scale_representations [--quick] [--out=FILE.json]

Prints three tables and writes them as JSON (default
paper_scale_representations.json). Every score comes from
`airstreams_jax.training.metrics` (the evaluation's own functions) against the
generator's true masks and flow:

1. Resolution ceiling (no training): for each image size and logit stride,
   a logit map at that stride, resized bilinearly to the frame size as
   `AIRStreams` does, then argmax, from two oracles: "pooled", the one-hot
   true masks average-pooled over stride x stride cells, and "fitted", free
   logits per frame fitted to the true masks by gradient descent on the
   segmentation loss. Pooling is not the best map: bilinearly interpolated
   logits of large magnitude put class boundaries between cell centres, so
   thin objects that never fill half a cell are still drawn (the fitted
   oracle, and the trained net, beat it). The fitted maps are reachable
   logits, so their scores bound the true ceiling from below (CE is not
   IoU, and the fit is not run to convergence). Stride 16 is the paper's
   DRN-18; the upsampling head (`decoder_features`) gives logits at the
   input resolution (at stride 2 before commit 58a131e, when the README's
   table was measured; the script reads the stride from the output).
2. Learned segmentation at 112 px: the DRN-18 alone, trained with the
   pixelwise softmax CE on the upsampled logits against the true masks
   (AdamW with the repo's clipping and warm-up cosine schedule, BatchNorm
   batch statistics), at output stride 16 without and with the upsampling
   head, scored on held-out clips with the running statistics.
3. Flow: the paper's flow layer (20 iterations, bottleneck 1, initial TV-L1
   parameters, no training) with several pre-smoothing sigmas, scored on
   moving-object pixels as `steps.representation_counts` does (object
   pixels with non-zero true flow, frames 0..T-2), split into the actor
   (`synthetic_generator.actor_speed` px/frame) and the distractors
   (positions jittering by <= 1 px, so steps of <= 2 px per axis). "zero"
   is the all-zero flow, whose EPE is the mean true speed.

The full run takes about 20 minutes on one CPU core (the two 300-step
full-width DRN-18 trainings take 7-8 minutes each, about 1.3-1.5 s/step);
--quick (4 clips, quarter width, 10 steps) about 2 minutes.
"""

import argparse
import functools
import json
import time
from typing import Any, Dict, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from airstreams_jax.training import metrics
from airstreams_jax.data import synthetic_generator as gen
from airstreams_jax.models import airstreams
from airstreams_jax.models import drn
from airstreams_jax.models import rep_flow
from airstreams_jax.training import losses
from airstreams_jax.training import optim
from configs import base

CLASS_NAMES = gen.CATEGORY_NAMES
NUM_SEG_CLASSES = len(CLASS_NAMES)
NUM_FRAMES = 8
PAPER_SIZE = 112
PAPER_STRIDE = 16
TRAIN_SEED, EVAL_SEED = 0, 1
# The actor's category id of each action label.
ACTOR_CATEGORY = [gen.label_category(k) for k in range(gen.MAX_NUM_CLASSES)]
CLIPS_PER_BATCH = 8  # Flow layer batch.

FULL = dict(
    sizes=(32, 112), strides=(16, 8, 2), eval_clips=32,
    widths=(64, 128, 256, 512), decoders=(0, 32), steps=300, batch_size=16,
    learning_rate=2e-3, warmup_steps=30, fit_steps=200,
    fit_learning_rate=0.3, flow_iters=20,
    sigmas=(0.0, 1.0, 2.0, 3.0))
QUICK = dict(FULL, eval_clips=4, widths=(16, 32, 64, 128), steps=10,
             warmup_steps=2, strides=(16, 2), fit_steps=30,
             sigmas=(0.0, 1.0))


def generate(seed: int, num_clips: int, size: int) -> Dict[str, np.ndarray]:
  """Generated clips stacked: video [N, T, S, S, 3], masks, flow, label."""
  clips = [clip for _, clip in gen.generate_split(
      seed, num_clips, gen.MAX_NUM_CLASSES, NUM_FRAMES, size)]
  return {k: np.stack([c[k] for c in clips]) for k in clips[0]}


def upsample(logits: jnp.ndarray, size: int) -> jnp.ndarray:
  """[N, h, w, K] logits to the frame size, as `AIRStreams` resizes them."""
  n, _, _, k = logits.shape
  return jax.image.resize(logits, (n, size, size, k), 'bilinear')


def scores(counts: np.ndarray) -> Dict[str, Any]:
  """`metrics.segmentation_scores` plus each class's predicted pixel share."""
  counts = np.asarray(counts)
  out = metrics.segmentation_scores(counts, CLASS_NAMES)
  share = counts.sum(0) / max(counts.sum(), 1)
  out['predicted_share'] = dict(zip(CLASS_NAMES, map(float, share)))
  return out


# --- 1. Resolution ceiling ----------------------------------------------------


@functools.partial(jax.jit, static_argnums=1)
def _pooled_oracle_counts(masks: jnp.ndarray, stride: int) -> jnp.ndarray:
  """Confusion matrix of the average-pooled true masks, upsampled."""
  n, s, _ = masks.shape
  cells = jax.nn.one_hot(masks, NUM_SEG_CLASSES).reshape(
      n, s // stride, stride, s // stride, stride, NUM_SEG_CLASSES)
  predicted = upsample(cells.mean((2, 4)), s).argmax(-1)
  return metrics.segmentation_counts(masks, predicted, 1, NUM_SEG_CLASSES)


def _fitted_logits_counts(masks: jnp.ndarray, stride: int, steps: int,
                         learning_rate: float) -> jnp.ndarray:
  """Confusion matrix of free logits at `stride`, fitted to the masks.

  Each frame gets its own [S/stride, S/stride, K] logit map, trained with
  Adam to minimise the segmentation loss after the bilinear upsampling: what
  a network of unlimited capacity could output at that stride.
  """
  n, s, _ = masks.shape
  tx = optax.adam(learning_rate)
  loss_fn = lambda logits, masks: losses.segmentation_loss(
      upsample(logits, s), masks)

  @jax.jit
  def step(logits, opt_state, masks):
    updates, opt_state = tx.update(jax.grad(loss_fn)(logits, masks),
                                   opt_state)
    return optax.apply_updates(logits, updates), opt_state

  logits = jnp.zeros((n, s // stride, s // stride, NUM_SEG_CLASSES))
  opt_state = tx.init(logits)
  for _ in range(steps):
    logits, opt_state = step(logits, opt_state, masks)
  predicted = upsample(logits, s).argmax(-1)
  return metrics.segmentation_counts(masks, predicted, 1, NUM_SEG_CLASSES)


def resolution_ceiling(masks: np.ndarray, stride: int,
                       cfg: Dict[str, Any]) -> Dict[str, Any]:
  """Scores of the pooled and of the fitted logits at `stride`."""
  frames = jnp.asarray(masks.reshape((-1,) + masks.shape[2:]))
  return dict(
      pooled=scores(_pooled_oracle_counts(frames, stride)),
      fitted=scores(_fitted_logits_counts(
          frames, stride, cfg['fit_steps'], cfg['fit_learning_rate'])))


# --- 2. Learned segmentation --------------------------------------------------


def train_and_eval_segmentation(train: Dict[str, np.ndarray],
                                evaluation: Dict[str, np.ndarray],
                                decoder_features: int,
                                cfg: Dict[str, Any]) -> Dict[str, Any]:
  """Trains the DRN-18 on `train`'s frames; scores it on `evaluation`'s."""
  size = train['video'].shape[2]
  model = drn.DilatedResNet18(
      NUM_SEG_CLASSES, widths=cfg['widths'], output_stride=PAPER_STRIDE,
      decoder_features=decoder_features)
  opt_config = base.get_config().optimizer
  opt_config.learning_rate = cfg['learning_rate']
  opt_config.warmup_steps = cfg['warmup_steps']
  tx = optim.make_optimizer(opt_config, cfg['steps'])
  images = lambda v: airstreams.preprocess_video(jnp.asarray(v), jnp.float32)

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(params, batch_stats, opt_state, video, masks):
    def loss_fn(params):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': batch_stats}, images(video),
          train=True, mutable=['batch_stats'])
      loss = losses.segmentation_loss(upsample(logits, size), masks)
      return loss, updates['batch_stats']
    (loss, batch_stats), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, batch_stats, opt_state, loss

  @jax.jit
  def eval_counts(variables, video, masks):
    logits = model.apply(variables, images(video), train=False)
    predicted = upsample(logits, size).argmax(-1)
    return metrics.segmentation_counts(masks, predicted, 1, NUM_SEG_CLASSES)

  frames = train['video'].reshape((-1, size, size, 3))
  frame_masks = train['masks'].reshape((-1, size, size))
  order = np.random.default_rng(TRAIN_SEED).permutation(len(frames))
  batch = cfg['batch_size']
  variables = model.init(jax.random.PRNGKey(TRAIN_SEED), images(frames[:1]),
                         train=False)
  params, batch_stats = variables['params'], variables['batch_stats']
  logits_size = jax.eval_shape(functools.partial(model.apply, train=False),
                               variables, images(frames[:1])).shape[1]
  opt_state = tx.init(params)
  losses_seen, start = [], time.perf_counter()
  for step in range(cfg['steps']):
    idx = np.take(order, np.arange(step * batch, (step + 1) * batch),
                  mode='wrap')
    params, batch_stats, opt_state, loss = train_step(
        params, batch_stats, opt_state, frames[idx], frame_masks[idx])
    losses_seen.append(float(loss))  # Also waits for the step.
    if step == 0:
      compile_s, start = time.perf_counter() - start, time.perf_counter()
  train_s = time.perf_counter() - start

  counts = 0
  for video, masks in zip(evaluation['video'], evaluation['masks']):
    counts += np.asarray(eval_counts(
        {'params': params, 'batch_stats': batch_stats}, video, masks))
  return dict(
      scores(counts), decoder_features=decoder_features,
      logits_stride=size // logits_size,
      final_train_loss=float(np.mean(losses_seen[-20:])),
      compile_s=compile_s,
      s_per_step=train_s / max(cfg['steps'] - 1, 1),
      train_s=compile_s + train_s)


# --- 3. Flow ------------------------------------------------------------------


def flow_scores(data: Dict[str, np.ndarray], sigma: float,
                cfg: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
  """Flow metrics of the untrained layer (sigma None: the zero flow)."""
  layer = rep_flow.RepresentationFlow(
      num_iter=cfg['flow_iters'], bottleneck=1, presmooth_sigma=sigma or 0.0)
  prepare = lambda v: airstreams.preprocess_video(v, jnp.float32)
  params = layer.init(jax.random.PRNGKey(0), prepare(data['video'][:1]))

  @jax.jit
  def sums(video, masks, true_flow, label):
    if sigma is None:
      flow = jnp.zeros(true_flow.shape, jnp.float32)
    else:
      flow = layer.apply(params, prepare(video))
    true_flow = true_flow.astype(jnp.float32)
    # As steps.representation_counts: object pixels whose content moves, on
    # the frames that have a successor.
    moving = (jnp.any(true_flow != 0, -1) & (masks != 0) &
              (jnp.arange(NUM_FRAMES) < NUM_FRAMES - 1)[:, None, None])
    # Each category is drawn by one object; the label's is the actor.
    actor_category = jnp.asarray(ACTOR_CATEGORY)[label]
    actor = masks == actor_category[:, None, None, None]
    groups = dict(moving=moving, actor=moving & actor,
                  distractors=moving & ~actor)
    return {k: metrics.flow_sums(flow, true_flow, m)
            for k, m in groups.items()}

  total = None
  for i in range(0, len(data['video']), CLIPS_PER_BATCH):
    clips = [data[k][i:i + CLIPS_PER_BATCH]
             for k in ('video', 'masks', 'flow', 'label')]
    batch = jax.tree.map(lambda x: np.asarray(x, np.float64), sums(*clips))
    total = batch if total is None else jax.tree.map(np.add, total, batch)
  return {k: metrics.summarise_representations(v, CLASS_NAMES)
          for k, v in total.items()}


# --- Driver -------------------------------------------------------------------


def _fmt_iou(result: Dict[str, Any]) -> str:
  return ' '.join(f'{result["iou"].get(c, float("nan")):6.3f}'
                  for c in CLASS_NAMES)


def run(cfg: Dict[str, Any]) -> Dict[str, Any]:
  """Runs the three measurements; prints their tables as they complete."""
  out = dict(settings=dict(cfg, num_frames=NUM_FRAMES, train_seed=TRAIN_SEED,
                           eval_seed=EVAL_SEED), ceiling=[],
             segmentation=[], flow=[])
  data = {s: generate(EVAL_SEED, cfg['eval_clips'], s) for s in cfg['sizes']}
  iou_head = ' '.join(f'{c[:6]:>6}' for c in CLASS_NAMES)

  print(f'\n1. Resolution ceiling ({cfg["eval_clips"]} clips x {NUM_FRAMES} '
        'frames per size): logits at the stride, upsampled bilinearly as the '
        'model does, argmax.\n   pooled: the true masks average-pooled over '
        'stride x stride cells; fitted: free logits per frame fitted to the '
        f'masks by the CE loss (Adam {cfg["fit_learning_rate"]:g}, '
        f'{cfg["fit_steps"]} steps)')
  print(f'{"size":>4} {"stride":>6} {"logits":>7} {"oracle":>6} '
        f'{"pixacc":>6} {"mIoU":>6} | IoU {iou_head}')
  for size in cfg['sizes']:
    for stride in cfg['strides']:
      result = dict(resolution_ceiling(data[size]['masks'], stride, cfg),
                    image_size=size, stride=stride)
      out['ceiling'].append(result)
      cells = f'{size // stride}x{size // stride}'
      for oracle in ('pooled', 'fitted'):
        r = result[oracle]
        print(f'{size:4d} {stride:6d} {cells:>7} {oracle:>6} '
              f'{r["pixel_accuracy"]:6.3f} {r["miou"]:6.3f} |     '
              f'{_fmt_iou(r)}')

  steps, batch = cfg['steps'], cfg['batch_size']
  train = generate(TRAIN_SEED, -(-steps * batch // NUM_FRAMES), PAPER_SIZE)
  print(f'\n2. Learned segmentation at {PAPER_SIZE} px: DRN-18 widths '
        f'{tuple(cfg["widths"])}, output stride {PAPER_STRIDE}, {steps} '
        f'steps x {batch} frames, AdamW {cfg["learning_rate"]:g}; '
        f'{len(train["video"])} training clips (seed {TRAIN_SEED}), '
        f'{cfg["eval_clips"]} held-out clips (seed {EVAL_SEED})')
  print(f'{"decoder":>7} {"logits":>7} {"loss":>6} {"pixacc":>6} '
        f'{"mIoU":>6} | IoU {iou_head} | {"person%":>7} {"s/step":>6} '
        f'{"total s":>7}')
  for decoder in cfg['decoders']:
    result = train_and_eval_segmentation(train, data[PAPER_SIZE], decoder,
                                         cfg)
    out['segmentation'].append(result)
    n = PAPER_SIZE // result['logits_stride']
    cells = f'{n}x{n}'
    print(f'{decoder:7d} {cells:>7} {result["final_train_loss"]:6.3f} '
          f'{result["pixel_accuracy"]:6.3f} {result["miou"]:6.3f} |     '
          f'{_fmt_iou(result)} | '
          f'{100 * result["predicted_share"]["person"]:6.2f}% '
          f'{result["s_per_step"]:6.2f} {result["train_s"]:7.0f}')

  print(f'\n3. Flow layer ({cfg["flow_iters"]} iterations, bottleneck 1, '
        'initial TV-L1 parameters) on moving-object pixels; EPE in px, '
        'dir = direction accuracy (within 45 deg)')
  print(f'{"size":>4} {"actor px/f":>10} {"sigma":>5} | {"moving":>14} | '
        f'{"actor":>14} | {"distractors":>14}')
  for size in cfg['sizes']:
    speed = gen.actor_speed(NUM_FRAMES, size)
    for sigma in (None,) + tuple(cfg['sigmas']):
      result = dict(flow_scores(data[size], sigma, cfg), image_size=size,
                    actor_speed=speed, presmooth_sigma=sigma)
      out['flow'].append(result)
      cols = ' | '.join(
          f'{r["flow_epe"]:5.2f} dir {r["flow_direction_accuracy"]:.2f}'
          for r in (result[g] for g in ('moving', 'actor', 'distractors')))
      label = 'zero' if sigma is None else f'{sigma:g}'
      print(f'{size:4d} {speed:10d} {label:>5} | {cols}')
  return out


def main(argv: Sequence[str] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='a ~1-minute run: few clips and steps, quarter '
                      'width')
  parser.add_argument('--out', default='paper_scale_representations.json',
                      help='where to write the JSON results')
  args = parser.parse_args(argv)
  start = time.perf_counter()
  out = run(QUICK if args.quick else FULL)
  out['wall_s'] = time.perf_counter() - start
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=1)
  print(f'\nWrote {args.out} ({out["wall_s"]:.0f} s).')


if __name__ == '__main__':
  main()
