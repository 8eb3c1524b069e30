"""What the data-parallel (:mod:`.ranks`) and GradCache (:mod:`.cached`) mistakes have in common."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["HigherMistake"]


@dataclass(frozen=True)
class HigherMistake:
    """A mistake above one process' embeddings: like :class:`~.catalogue.Mistake` (``clause``,
    ``description`` of what the implementation computes instead, ``provenance``), with every catalogue
    mutant that has it (``mutants``: two implementations can make one mistake) and the switches of its
    level's emulation (``knobs``). Nothing is fitted: one candidate, no parameters."""

    id: str
    clause: str
    description: str
    provenance: str
    mutants: tuple[str, ...]
    knobs: dict[str, str]

    @property
    def mutant(self) -> str | None:
        """The first catalogue mutant that has it (:attr:`mutants` lists every one)."""
        return self.mutants[0] if self.mutants else None

    def candidates(self, observations: Sequence[Any]) -> list[dict[str, float]]:
        return [{}]

    def text(self, **params: float) -> str:
        return self.description.format(**params)
