"""Tiny fake copies of HMDB51, Charades, Toyota Smarthome and Moments in Time.

Each copy has the real layout, real-looking file names and the real formats
of the split/annotation files, but only a few short generated clips. Videos
are written with PyAV; with `masks=True` every video also gets the `files`
teacher's `<stem>.masks.npz` (uint8 [T, h, w], T = the video's frame count)
and the copy's root a `classes.txt`.
"""

import csv
import os
from typing import Sequence

import av
import numpy as np

NUM_FRAMES = 8
FPS = 4  # 8 frames = 2 s, so Charades intervals in seconds cover few frames.
WIDTH, HEIGHT = 48, 32
MASK_SIZE = (8, 12)  # (h, w) of the precomputed masks.
MASK_CLASSES = ('background', 'person')


def write_video(path: str, seed: int, num_frames: int = NUM_FRAMES) -> None:
  """Writes a short clip: an .avi (MPEG-4 part 2) or an .mp4 (H.264)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(seed)
  codec = 'mpeg4' if path.lower().endswith('.avi') else 'libx264'
  with av.open(path, 'w') as container:
    stream = container.add_stream(codec, rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, 'yuv420p'
    base = rng.integers(0, 256, size=3)
    for t in range(num_frames):
      frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
      frame[...] = (base + 20 * t) % 256
      frame[:, 4 * t:4 * t + 8] = 255  # A bar that moves right.
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_masks(video_path: str, num_frames: int = NUM_FRAMES) -> None:
  """Writes `<stem>.masks.npz` beside a video: the moving bar is 'person'."""
  masks = np.zeros((num_frames,) + MASK_SIZE, np.uint8)
  for t in range(num_frames):
    masks[t, :, t:t + 2] = 1
  stem = os.path.splitext(video_path)[0]
  np.savez(stem + '.masks.npz', masks=masks)


def _write_videos(root: str, relative_paths: Sequence[str],
                  masks: bool) -> None:
  for seed, relative_path in enumerate(relative_paths):
    path = os.path.join(root, relative_path)
    write_video(path, seed)
    if masks:
      write_masks(path)
  if masks:
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
      f.write('\n'.join(MASK_CLASSES) + '\n')


# HMDB51: three classes (two with underscores in their names, as in the real
# ones), four videos each. In split s the ids are [1, 1, 2, 0] rotated by
# s - 1, so every split has 2 train, 1 test and 1 unused video per class.
HMDB_CLASSES = ('brush_hair', 'cartwheel', 'climb_stairs')
HMDB_VIDEOS = {
    c: [f'{prefix}_{c}_{body}_goo_{k}.avi'
        for k, (prefix, body) in enumerate([
            ('April_09', 'u_nm_np1_ba'),
            ('Blonde_being_brushed', 'h_cm_np2_le'),
            ('Prelinger_HabitPat1954', 'f_nm_np1_fr'),
            ('THE_PROTECTOR', 'u_cm_np1_ri')])]
    for c in HMDB_CLASSES}
HMDB_SPLIT_DIR = 'testTrainMulti_7030_splits'


def hmdb_split_ids(split: int) -> list:
  ids = ['1', '1', '2', '0']
  shift = split - 1
  return ids[-shift:] + ids[:-shift] if shift else ids


def make_hmdb51(root: str, masks: bool = False) -> str:
  """Writes a fake HMDB51 copy under `root`; returns `root`.

  Videos are `root/<class>/<video>.avi`; split files are
  `root/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` with lines
  `<video>.avi <id> ` (trailing space, as in the official files).
  """
  _write_videos(root, [os.path.join(c, v) for c in HMDB_CLASSES
                       for v in HMDB_VIDEOS[c]], masks)
  split_dir = os.path.join(root, HMDB_SPLIT_DIR)
  os.makedirs(split_dir, exist_ok=True)
  for c in HMDB_CLASSES:
    for split in (1, 2, 3):
      with open(os.path.join(split_dir, f'{c}_test_split{split}.txt'),
                'w') as f:
        for video, split_id in zip(HMDB_VIDEOS[c], hmdb_split_ids(split)):
          f.write(f'{video} {split_id} \n')
  return root


# Charades: the first five classes of Charades_v1_classes.txt, a train and a
# test CSV with the release's header, quoted free-text fields (commas and
# semicolons inside quotes) and one video without actions in each split.
CHARADES_CLASSES = (
    ('c000', 'Holding some clothes'),
    ('c001', 'Putting clothes somewhere'),
    ('c002', 'Taking some clothes from somewhere'),
    ('c003', 'Throwing clothes somewhere'),
    ('c004', 'Tidying some clothes'),
)
CHARADES_HEADER = ('id', 'subject', 'scene', 'quality', 'relevance',
                   'verified', 'script', 'objects', 'descriptions', 'actions',
                   'length')
# id -> actions field.
CHARADES_TRAIN = {
    '46GP8': 'c001 0.00 1.00;c003 0.50 2.00',
    'N11GT': 'c000 0.25 1.75',
    '0IH69': '',
    'KRF68': 'c004 1.00 2.00;c000 0.00 0.50',
}
CHARADES_TEST = {
    'YSKX3': 'c002 0.00 2.00',
    'TQ5Q6': '',
    'ZS9XR': 'c003 1.20 1.90;c001 0.00 0.60',
}


def _charades_rows(videos):
  for i, (video_id, actions) in enumerate(videos.items()):
    yield {'id': video_id, 'subject': f'HR43{i}', 'scene': 'Kitchen',
           'quality': '6', 'relevance': '7', 'verified': 'Yes',
           'script': 'A person holds a towel, then; puts it down.',
           'objects': 'clothes;towel', 'descriptions': 'A person, folding.',
           'actions': actions, 'length': f'{NUM_FRAMES / FPS:.2f}'}


def make_charades(root: str, masks: bool = False,
                  video_dir: str = 'Charades_v1_480') -> str:
  """Writes a fake Charades v1 copy under `root`; returns `root`.

  Annotations go to `root/Charades/` (as `Charades.zip` unzips) and videos to
  `root/<video_dir>/<id>.mp4`.
  """
  _write_videos(root, [os.path.join(video_dir, v + '.mp4')
                       for v in (*CHARADES_TRAIN, *CHARADES_TEST)], masks)
  annotation_dir = os.path.join(root, 'Charades')
  os.makedirs(annotation_dir, exist_ok=True)
  with open(os.path.join(annotation_dir, 'Charades_v1_classes.txt'),
            'w') as f:
    f.writelines(f'{c} {name}\n' for c, name in CHARADES_CLASSES)
  for file_name, videos in (('Charades_v1_train.csv', CHARADES_TRAIN),
                            ('Charades_v1_test.csv', CHARADES_TEST)):
    with open(os.path.join(annotation_dir, file_name), 'w',
              newline='') as f:
      writer = csv.DictWriter(f, fieldnames=CHARADES_HEADER)
      writer.writeheader()
      writer.writerows(_charades_rows(videos))
  return root


# Toyota Smarthome: subjects 3 and 25 are cross-subject train subjects,
# 2 and 10 test subjects.
TOYOTA_VIDEOS = (
    'Cook.Cleandishes_p02_r00_v02_c03.mp4',
    'Cook.Cleandishes_p03_r00_v14_c03.mp4',
    'Drink.Fromcup_p25_r02_v01_c01.mp4',
    'Drink.Fromcup_p10_r05_v07_c04.mp4',
    'Walk_p03_r01_v05_c07.mp4',
    'Walk_p25_r03_v11_c02.mp4',
    'Walk_p10_r00_v03_c06.mp4',
)


def make_toyota_smarthome(root: str, masks: bool = False) -> str:
  """Writes a fake Toyota Smarthome copy (`root/mp4/...`); returns `root`."""
  _write_videos(root, [os.path.join('mp4', v) for v in TOYOTA_VIDEOS], masks)
  # Files that are not videos are ignored by the listing.
  with open(os.path.join(root, 'mp4', 'README.txt'), 'w') as f:
    f.write('Toyota Smarthome trimmed videos\n')
  return root


# Moments in Time: categories listed out of index order (the index column,
# not the line order or the alphabet, defines the labels).
MIT_CATEGORIES = (('aiming', 2), ('applauding', 0), ('arresting', 1))
MIT_TRAIN = (
    ('aiming/yt-5of6ffo6-Bw_205.mp4', 'aiming', 3, 0),
    ('aiming/getty-target-practice-video-id511393410_9.mp4', 'aiming', 2, 1),
    ('applauding/flickr-0-9-7-7-2-4-1-3-6009772413_3.mp4', 'applauding', 3,
     0),
    ('arresting/getty-police-arrest-video-id635808620_4.mp4', 'arresting', 2,
     1),
    ('arresting/yt-8RJeMhyqXz4_12.mp4', 'arresting', 3, 0),
)
MIT_VALIDATION = (
    ('aiming/yt-Gq1Q3cZ1b8w_27.mp4', 'aiming', 3, 0),
    ('applauding/yt-1hX3sHkaa7E_95.mp4', 'applauding', 2, 1),
)


def make_moments_in_time(root: str, masks: bool = False) -> str:
  """Writes a fake copy as `root/Moments_in_Time_Raw/...`; returns `root`."""
  base = os.path.join(root, 'Moments_in_Time_Raw')
  _write_videos(base, [os.path.join('training', r[0]) for r in MIT_TRAIN] +
                [os.path.join('validation', r[0]) for r in MIT_VALIDATION],
                masks)
  if masks:  # The `files` teacher reads classes.txt at manual_dir (`root`).
    os.replace(os.path.join(base, 'classes.txt'),
               os.path.join(root, 'classes.txt'))
  with open(os.path.join(base, 'moments_categories.txt'), 'w') as f:
    f.writelines(f'{name},{index}\n' for name, index in MIT_CATEGORIES)
  for file_name, rows in (('trainingSet.csv', MIT_TRAIN),
                          ('validationSet.csv', MIT_VALIDATION)):
    with open(os.path.join(base, file_name), 'w', newline='') as f:
      csv.writer(f).writerows(rows)
  return root


def decode_or_crash(path: str, **kwargs):
  """video_io.decode, except that a video whose name contains 'crash' kills
  the process that decodes it (SIGABRT), as a decoder's segfault would. A
  builder's `decode` (module level: spawned build workers import it)."""
  if 'crash' in os.path.basename(path):
    os.abort()
  from airstreams_jax.data import video_io  # pylint: disable=g-import-not-at-top
  return video_io.decode(path, **kwargs)
