"""infonce-spec: specification, exact reference and conformance suite for in-batch contrastive losses.

The normative text is ``spec/infonce-spec.md``; every rule there carries a clause ID (``QD-1``,
``PART-2``, ...) that the code, the errors and the conformance reports quote.

Modules every part may import (they import nothing of the project):

* :mod:`infonce_spec.vocabulary` -- the spec's names: directions, modes, similarities, the cos floor.
* :mod:`infonce_spec.clauses`    -- the clause table.
* :mod:`infonce_spec.errors`     -- errors that name a clause.
* :mod:`infonce_spec.release`    -- the version (spec and package) and the SHA-256 of the spec text.

Subpackages:

* :mod:`infonce_spec.reference`   -- the exact float64 reference (loss and closed-form gradients):
  normative chapter by chapter, with a fast engine behind it.
* :mod:`infonce_spec.adapters`    -- conformant torch implementations and adapters for third parties.
* :mod:`infonce_spec.conformance` -- the hypothesis conformance suite, its runner and pytest plugin.
"""

from .release import PACKAGE_VERSION as __version__
from .release import SPEC_SHA256, SPEC_VERSION

__all__ = ["SPEC_SHA256", "SPEC_VERSION", "__version__"]
