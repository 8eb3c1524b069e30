"""A catalogue of faulty InfoNCE implementations the conformance suite must catch.

* :mod:`.base`       -- one compact, correct torch implementation with overridable hooks;
* :mod:`.cached`     -- its GradCache form (RNG replay, per-forward cache, chunked loss stage);
* :mod:`.adapter`    -- the conformance adapter of both (``...mutants.adapter:TorchAdapter``, correct);
* :mod:`.catalogue`  -- the mutants: one overridden hook each, tagged with the clause it breaks and
  the public bug it mirrors (``...mutants.catalogue:adapters.<id>``);
* :mod:`.memory`     -- re-exports the CACHE-5 property, now ``properties.cached.LossStageMemory``;
* :mod:`.killmatrix` -- runs the suite against the catalogue; ``python -m infonce_spec.conformance.mutants``
  prints the kill matrix (docs/mutants.md).

Importing this package imports nothing heavy; the modules need torch.
"""
