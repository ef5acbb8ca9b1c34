"""The datasets margin_jax knows: tfds names, class counts and image shapes."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the data pipeline needs to know about one dataset.

  Attributes:
    name: the tensorflow-datasets name.
    num_classes: number of classes of ``label``.
    image_shape: ``(height, width, channels)`` of every image.
    offline: whether ``margin_jax.data.prepare`` can build it from local raw
      files.
    download: whether it can be downloaded (`margin_jax.data.download`
      for the datasets it lists, else tfds' own builder).
  """

  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  offline: bool
  download: bool = True


DATASETS: dict[str, DatasetSpec] = {
  spec.name: spec
  for spec in (
    DatasetSpec("mnist", 10, (28, 28, 1), offline=True),
    DatasetSpec("fashion_mnist", 10, (28, 28, 1), offline=True),
    DatasetSpec("cifar10", 10, (32, 32, 3), offline=True),
    DatasetSpec("cifar100", 100, (32, 32, 3), offline=True),
    DatasetSpec("svhn_cropped", 10, (32, 32, 3), offline=False),
    # The JPEG (quality ~75) copy of CIFAR-10 in ../shared/datasets: not
    # byte-exact, so it never answers to the name "cifar10".
    DatasetSpec("cifar10_jpeg", 10, (32, 32, 3), offline=True, download=False),
  )
}


def get_spec(name: str) -> DatasetSpec:
  """Returns the `DatasetSpec` of ``name``; raises ValueError if unknown."""
  try:
    return DATASETS[name]
  except KeyError:
    raise ValueError(f"Unknown dataset {name!r}; expected one of {sorted(DATASETS)}.") from None
