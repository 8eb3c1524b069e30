"""infonce-spec: specification, exact reference and conformance suite for in-batch contrastive losses.

The normative text is ``spec/infonce-spec.md``; every rule there carries a clause ID (``QD-1``,
``PART-2``, ...) that the code, the errors and the conformance reports quote.

Subpackages:

* :mod:`infonce_spec.reference`   -- the exact NumPy float64 reference (loss and closed-form gradients).
* :mod:`infonce_spec.adapters`    -- conformant torch implementations and adapters for third parties.
* :mod:`infonce_spec.conformance` -- the hypothesis conformance suite, its runner and pytest plugin.
"""

SPEC_VERSION = "1.0.0-draft"
__version__ = "1.0.0.dev0"

__all__ = ["SPEC_VERSION", "__version__"]
