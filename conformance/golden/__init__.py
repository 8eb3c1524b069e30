"""Golden vectors: language-neutral JSON test vectors of infonce-spec, their generator and verifier.

``spec/vectors/`` holds small cases (inputs, config, expected loss and gradients, per-rank
data-parallel expectations, and invalid inputs with the clause their error must name), written by
``spec/vectors/generate.py`` from the float64 reference. ``spec/vectors/SCHEMA.md`` is the schema;
``docs/golden-vectors.md`` the guide. This package holds

* the JSON conventions (numbers, non-finite values) and the writer (:func:`dumps`);
* the generator (:func:`build_vectors`) and the drift check (:func:`check_vectors`);
* the loader (:func:`load_cases`) -- cases are found through ``MANIFEST.json``, never by globbing;
* claims (:class:`Claim`, :func:`load_claim`): what an implementation implements, the cases that
  apply to it (:func:`case_applies`) and the clauses it can exercise (:func:`exercisable_clauses`);
* the verifier (:func:`verify`) of a results file from an implementation in any language, judged
  against a claim or against everything;
* the results writer for a Python adapter (:func:`write_results`, ``golden run``), through the
  plug-in protocol only;
* the command line (:func:`main`; ``python -m infonce_spec.conformance.golden verify|run|cases|show``).

In any mismatch between the vectors and ``spec/infonce-spec.md``, the spec is right.
"""

from .claims import Claim, case_applies, exercisable_clauses, load_claim
from .cli import GOLDEN_HELP, VERIFY_HELP, add_golden_commands, add_verify_arguments, main, run_verify
from .format import ALL_CLAUSES, CHECK_RTOL, FLOOR, FORMAT, SCHEMA_VERSION, TOLERANCES, dumps, relative_error
from .generate import CaseSpec, build_vectors, check_vectors
from .load import default_vectors_dir, load_cases
from .run import adapter_claim, write_results
from .verify import Report, verify

__all__ = [
    "ALL_CLAUSES",
    "CHECK_RTOL",
    "FLOOR",
    "FORMAT",
    "GOLDEN_HELP",
    "SCHEMA_VERSION",
    "TOLERANCES",
    "VERIFY_HELP",
    "CaseSpec",
    "Claim",
    "Report",
    "adapter_claim",
    "add_golden_commands",
    "add_verify_arguments",
    "build_vectors",
    "case_applies",
    "check_vectors",
    "default_vectors_dir",
    "dumps",
    "exercisable_clauses",
    "load_cases",
    "load_claim",
    "main",
    "relative_error",
    "run_verify",
    "verify",
    "write_results",
]
