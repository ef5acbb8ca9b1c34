"""margin_jax: large-margin softmax losses as pure JAX functions."""

__version__ = "0.1.0"
