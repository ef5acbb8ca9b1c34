"""``python -m margin_jax.data.prepare``: `margin_jax.data.prepare.main`.

A module of its own, so the command runs the builders the package already
imported instead of defining (and registering with tfds) them a second time.
"""

from margin_jax.data.prepare import main

main()
