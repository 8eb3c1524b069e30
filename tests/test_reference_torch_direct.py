"""Family 3: the reference against the spec written directly in torch float64, differentiated by autograd.

The oracle (tests/oracles/torch_direct.py) loops over queries and builds each row's candidate list
element by element (masked candidates left out), then ``logsumexp``; ``scale`` is a tensor with
``requires_grad``. Configurations and shapes (N <= 6, K <= 4, D <= 5, every hardness mode and
strength) come from hypothesis; the normative reference and the engine (square products held, and
streamed by chunk) are both checked. Loss, per-query losses and every gradient (queries, docs, scale)
must agree within ``1e-10 * max(max|oracle|, floor)`` element-wise, where ``floor`` is the size of
the terms each output is a sum of (the error model of :mod:`tests.oracles`): two float64
evaluations of a cancelling sum legitimately differ by ~``u * sum|terms|``.
"""

from __future__ import annotations

from hypothesis import given

from infonce_spec.reference import Config
from tests.oracles import Problem, check_against, problems, reference_settings
from tests.oracles.torch_direct import direct_loss_and_grad
from tests.reference_implementations import IMPLEMENTATIONS

RTOL = 1e-10


def compare_with_direct(p: Problem) -> None:
    expected = direct_loss_and_grad(p.queries, p.docs, **p.case.kwargs())
    for name, loss_and_grad in IMPLEMENTATIONS.items():
        got = loss_and_grad(p.queries, p.docs, Config(**p.case.kwargs()))
        check_against(expected, got, p.case, p.queries, p.docs, f"{p.replay} ({name})", RTOL)


@reference_settings(max_examples=120)
@given(p=problems(max_n=6, max_k=4, max_d=5))
def test_reference_matches_direct_torch_autograd(p: Problem) -> None:
    """LOSS-1, LOSS-2, GRAD-1, GRAD-2, SCALE-2, HARD-2..5 over generated configs and shapes."""
    compare_with_direct(p)
