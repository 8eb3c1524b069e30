"""A JAX adapter whose module computes at import -- a jitted warm-up, as training scripts often have.

The runner loads the adapter in its own process first, so XLA's CPU client and its threads are
running there before any call worker starts. Those threads do not survive ``fork``: a forked worker
would wait forever on a lock one of them held. The suite sees ``jax`` loaded in the runner and
spawns its workers instead (docs/conformance.md, "Isolation"); this adapter passes with the default
settings, which ``tests/test_frameworks.py`` checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax_adapter import JaxAdapter

#: Computed when the module is imported: XLA's client starts here.
WARM_UP = float(jax.jit(lambda x: jnp.sum(x * x))(jnp.arange(4.0)))

adapter = JaxAdapter("jax-infonce-computes-at-import")
