"""Golden vectors: language-neutral JSON test vectors of infonce-spec, their generator and verifier.

``spec/vectors/`` holds small cases (inputs, config, expected loss and gradients, per-rank
data-parallel expectations, and invalid inputs with the clause their error must name), written by
``spec/vectors/generate.py`` from the float64 reference. ``spec/vectors/SCHEMA.md`` is the schema;
``docs/golden-vectors.md`` the guide. This package holds

* the JSON conventions (numbers, non-finite values) and the writer (:func:`dumps`);
* the generator (:func:`build_vectors`) and the drift check (:func:`check_vectors`);
* the loader (:func:`load_cases`) -- cases are found through ``MANIFEST.json``, never by globbing;
* the verifier (:func:`verify`) of a results file from an implementation in any language, and its
  command line (:func:`main`; ``python -m infonce_spec.conformance.golden verify RESULTS``).

In any mismatch between the vectors and ``spec/infonce-spec.md``, the spec is right.
"""

from .cli import VERIFY_HELP, add_verify_arguments, main, run_verify
from .format import ALL_CLAUSES, CHECK_RTOL, FLOOR, FORMAT, SCHEMA_VERSION, TOLERANCES, dumps, relative_error
from .generate import CaseSpec, build_vectors, check_vectors
from .load import default_vectors_dir, load_cases
from .verify import Report, verify

__all__ = [
    "ALL_CLAUSES",
    "CHECK_RTOL",
    "FLOOR",
    "FORMAT",
    "SCHEMA_VERSION",
    "TOLERANCES",
    "VERIFY_HELP",
    "CaseSpec",
    "Report",
    "add_verify_arguments",
    "build_vectors",
    "check_vectors",
    "default_vectors_dir",
    "dumps",
    "load_cases",
    "main",
    "relative_error",
    "run_verify",
    "verify",
]
