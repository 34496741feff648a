"""How much parallel answers agree: mean pairwise Jaccard similarity of their word sets.

Cheap, deterministic and model-free; 1.0 means the same vocabulary, 0.0 nothing shared.
"""

from __future__ import annotations

import itertools
import re

_WORD = re.compile(r"\w+")


def token_set(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def agreement(texts: list[str]) -> float:
    sets = [token_set(text) for text in texts]
    pairs = list(itertools.combinations(sets, 2))
    if not pairs:
        return 1.0
    scores = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs]
    return round(sum(scores) / len(scores), 4)
