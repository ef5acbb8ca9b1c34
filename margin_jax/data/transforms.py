"""The papers' preprocessing recipes as pure JAX functions, run on device.

Images arrive as uint8 ``[..., H, W, C]`` batches (e.g. pmap's per-device
``[per_device, H, W, C]``); every random function takes an explicit PRNG key,
draws independently per image, and gives the same output for the same key and
batch. `preprocess` is the one place that maps a recipe name to the papers'
steps.

References:
  [L-Softmax] Liu, Wen, Yu, Yang. Large-Margin Softmax Loss for Convolutional
    Neural Networks. ICML 2016.
  [Noisy] Chen, Deng, Du. Noisy Softmax: Improving the Generalization Ability of
    DCNN via Postponing the Early Softmax Saturation. CVPR 2017.
  [EM] Wang, Zhang, Lei, Xiao, Li. Ensemble Soft-Margin Softmax Loss for Image
    Classification. IJCAI 2018.
  [Virtual] Chen, Deng, Shen. Virtual Class Enhanced Discriminative Embedding
    Learning. NeurIPS 2018.
"""

import functools

import jax
import jax.numpy as jnp

RECIPES = ("none", "mean", "cifar_plus", "noisy_crop", "face")
NOISY_CROP_SIZE = 30  # [Noisy] Sec. 6.3.
CIFAR_PAD = 4  # [L-Softmax] Sec. 5.2, after Lee et al. (2015).


def to_float(images) -> jax.Array:
  """Scales uint8 pixels to float32 in ``[0, 1]`` ([EM] Sec. 4.1)."""
  return jnp.asarray(images).astype(jnp.float32) / 255.0


def pixel_mean(train_images) -> jax.Array:
  """Per-pixel mean of the training split, in ``[0, 1]`` units.

  Args:
    train_images: uint8 ``[N, H, W, C]``, the whole training split.

  Returns:
    float32 ``[H, W, C]``; summed exactly in int32.
  """
  images = jnp.asarray(train_images)
  total = jnp.sum(images, axis=0, dtype=jnp.int32)
  return total.astype(jnp.float32) / (255.0 * images.shape[0])


def subtract_mean(x, mean) -> jax.Array:
  """Subtracts the per-pixel mean of the training split.

  As in [L-Softmax] Sec. 5.1, [EM] Sec. 4.1 and [Noisy] Sec. 6.1.

  Args:
    x: float ``[..., H, W, C]``, e.g. from `to_float`.
    mean: float ``[H, W, C]`` from `pixel_mean`.

  Returns:
    ``x - mean``, broadcast over the leading axes.
  """
  return x - mean


def _gather_crops(x, top, left, size, flip=None) -> jax.Array:
  """Crops ``x[n, top[n]:, left[n]:]`` to ``size``, mirrored where ``flip[n]``.

  One gather for the whole batch: cheaper on CPU than a vmapped dynamic_slice.
  """
  rows = top[:, None] + jnp.arange(size[0])
  cols = left[:, None] + jnp.arange(size[1])
  if flip is not None:
    cols = jnp.where(flip[:, None], cols[:, ::-1], cols)
  batch = jnp.arange(x.shape[0])[:, None, None]
  return x[batch, rows[:, :, None], cols[:, None, :]]


def _per_image(fn):
  """Lets ``fn(key, x [N, H, W, C])`` take any leading batch shape."""

  @functools.wraps(fn)
  def wrapped(key, x, *args):
    x = jnp.asarray(x)
    out = fn(key, x.reshape(-1, *x.shape[-3:]), *args)
    return out.reshape(*x.shape[:-3], *out.shape[-3:])

  return wrapped


@functools.partial(jax.jit, static_argnames="size")
@_per_image
def random_crop(key, x, size: int) -> jax.Array:
  """A random ``size x size`` crop of every image ([Noisy] Sec. 6.3: 30x30).

  Args:
    key: a PRNG key.
    x: ``[..., H, W, C]`` with ``H, W >= size``.
    size: the crop's side.

  Returns:
    ``[..., size, size, C]``, offsets uniform and independent per image.
  """
  height, width = x.shape[1:3]
  if size > min(height, width):
    raise ValueError(f"size={size} exceeds the image size {height}x{width}.")
  key_top, key_left = jax.random.split(key)
  top = jax.random.randint(key_top, x.shape[:1], 0, height - size + 1)
  left = jax.random.randint(key_left, x.shape[:1], 0, width - size + 1)
  return _gather_crops(x, top, left, (size, size))


def center_crop(x, size):
  """The central ``size x size`` (or ``h x w`` for ``size=(h, w)``) crop, the
  test view of `random_crop`; a NumPy array stays one.

  Args:
    x: ``[..., H, W, C]``.
    size: the crop's side, or its ``(height, width)``; for odd margins the
      extra row/column is cut at the bottom/right.

  Returns:
    ``[..., h, w, C]``.
  """
  height, width = x.shape[-3:-1]
  h, w = (size, size) if isinstance(size, int) else size
  if h > height or w > width:
    raise ValueError(f"size={size} exceeds the image size {height}x{width}.")
  top, left = (height - h) // 2, (width - w) // 2
  return x[..., top : top + h, left : left + w, :]


@jax.jit
@_per_image
def cifar_augment(key, x) -> jax.Array:
  """CIFAR "+" augmentation: pad 4, random crop back to size, random mirror.

  "4 pixels are padded on each side, and a 32x32 crop is randomly sampled from
  the padded image or its horizontal flip" ([L-Softmax] Sec. 5.2, [EM] Sec.
  4.1, [Virtual] Sec. 6). Padding is zeros, i.e. the mean pixel when applied
  after `subtract_mean` as `preprocess` does.

  Args:
    key: a PRNG key.
    x: ``[..., H, W, C]``.

  Returns:
    Same shape as ``x``: offsets in ``[-4, 4]`` and the flip (probability
    1/2) drawn independently per image.
  """
  n, height, width, _ = x.shape
  pad = CIFAR_PAD
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  key_top, key_left, key_flip = jax.random.split(key, 3)
  top = jax.random.randint(key_top, (n,), 0, 2 * pad + 1)
  left = jax.random.randint(key_left, (n,), 0, 2 * pad + 1)
  flip = jax.random.bernoulli(key_flip, 0.5, (n,))
  return _gather_crops(padded, top, left, (height, width), flip)


@functools.partial(jax.jit, static_argnames=("recipe", "train"))
def preprocess(key, images, *, recipe: str, mean=None, train: bool) -> jax.Array:
  """Applies one of the papers' preprocessing recipes to a uint8 batch.

  Recipes:
    * ``"none"``: scale to ``[0, 1]`` ([EM] Sec. 4.1, MNIST).
    * ``"mean"``: scale, subtract the per-pixel training mean ([L-Softmax] Sec.
      5.1, [Noisy] Sec. 6.1, [Virtual] Sec. 6 follows [Noisy]).
    * ``"cifar_plus"``: ``"mean"``, then `cifar_augment` when training; the
      test view is the plain 32x32 image ([L-Softmax] Sec. 5.2, [EM] Sec. 4.1).
    * ``"noisy_crop"``: ``"mean"``, then a random 30x30 crop when training and
      the centre 30x30 crop for test ([Noisy] Sec. 6.3).
    * ``"face"``: ``(x - 127.5) / 127.5`` per pixel, and a random horizontal
      flip (probability 1/2 per image) when training (insightface's
      ``Normalize(0.5, 0.5)`` and ``RandomHorizontalFlip``); no mean needed.

  Args:
    key: a PRNG key; unused (may be None) unless ``train`` and the recipe is
      random.
    images: uint8 ``[..., H, W, C]``.
    recipe: one of `RECIPES`.
    mean: float32 ``[H, W, C]`` from `pixel_mean`; required unless ``"none"``.
    train: training (random) or test (deterministic) view.

  Returns:
    float32 ``[..., H', W', C]``.

  Example:
    >>> import jax, numpy as np
    >>> train_images = np.full((8, 32, 32, 3), 128, np.uint8)
    >>> mean = pixel_mean(train_images)
    >>> x = preprocess(jax.random.key(0), train_images[:4], recipe="cifar_plus",
    ...                mean=mean, train=True)
    >>> x.shape, x.dtype
    ((4, 32, 32, 3), dtype('float32'))
  """
  if recipe not in RECIPES:
    raise ValueError(f"Unknown recipe {recipe!r}; expected one of {RECIPES}.")
  x = to_float(images)
  if recipe == "none":
    return x
  if recipe == "face":
    x = (x - 0.5) / 0.5
    if train:
      flip = jax.random.bernoulli(key, 0.5, x.shape[:1])
      x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return x
  if mean is None:
    raise ValueError(f"Recipe {recipe!r} needs the training-set mean; got None.")
  x = subtract_mean(x, mean)
  if recipe == "cifar_plus" and train:
    x = cifar_augment(key, x)
  elif recipe == "noisy_crop":
    x = random_crop(key, x, NOISY_CROP_SIZE) if train else center_crop(x, NOISY_CROP_SIZE)
  return x
