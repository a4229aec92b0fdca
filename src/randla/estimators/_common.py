"""What the estimators share."""

from __future__ import annotations

import numpy as np


def _random_seed(random_state) -> np.random.Generator:
    """SPEC 7 generator from scikit-learn's ``random_state`` (int, RandomState or None)."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(random_state)
