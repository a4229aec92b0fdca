"""What the estimators share."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from .._validate import check_choice
from ..kernels.landmarks import METHODS


def _random_seed(random_state) -> np.random.Generator:
    """SPEC 7 generator from scikit-learn's ``random_state`` (int, RandomState or None).

    None means numpy's global RandomState, as in scikit-learn: a seed is drawn
    from it, so ``np.random.seed`` makes fits reproducible (and advances it).
    """
    if random_state is None:
        random_state = check_random_state(None)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    return np.random.default_rng(random_state)


def _check_landmarks(landmarks, extra: str = "") -> str:
    """The estimators' ``landmarks``, checked under that name: :func:`randla.landmarks` calls it ``method``."""
    return check_choice("landmarks", landmarks, METHODS, extra)
