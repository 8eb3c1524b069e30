"""infonce-spec: specification, exact reference and conformance suite for in-batch contrastive losses.

The normative text is ``spec/infonce-spec.md``; every rule there carries a clause ID (``QD-1``,
``PART-2``, ...) that the code, the errors and the conformance reports quote.

Modules every part may import (they import nothing of the project):

* :mod:`infonce_spec.vocabulary` -- the spec's names: directions, modes, similarities, the cos floor.
* :mod:`infonce_spec.clauses`    -- the clause table.
* :mod:`infonce_spec.errors`     -- errors that name a clause.

Subpackages:

* :mod:`infonce_spec.reference`   -- the exact float64 reference (loss and closed-form gradients):
  normative chapter by chapter, with a fast engine behind it.
* :mod:`infonce_spec.adapters`    -- conformant torch implementations and adapters for third parties.
* :mod:`infonce_spec.conformance` -- the hypothesis conformance suite, its runner and pytest plugin.
"""

SPEC_VERSION = "1.1.0-draft"
__version__ = "1.0.0.dev0"

__all__ = ["SPEC_VERSION", "__version__"]
