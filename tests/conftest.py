"""Test setup: four forced CPU devices, set before JAX is first imported.

Every test process then sees ``jax.local_devices()`` == 4 CPU devices, so the
pmap tests run the same multi-device code as a GPU host would.
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""),
     "--xla_force_host_platform_device_count=4"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
