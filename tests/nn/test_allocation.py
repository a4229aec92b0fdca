import itertools

import numpy as np
import pytest

from randla.nn.allocation import energy_ranks, global_ranks, parameters, summed_error, uniform_ranks
from randla.nn.factorize import break_even_rank


def _layers(rng, count=6):
    shapes = [(int(rng.integers(20, 60)), int(rng.integers(20, 60))) for _ in range(count)]
    caps = [break_even_rank(s) for s in shapes]
    errors = []
    for cap in caps:
        energies = np.sort(rng.random(cap) ** rng.uniform(1, 6))[::-1]
        total = energies.sum() * rng.uniform(1.05, 1.5)
        errors.append(np.concatenate([[total], total - np.cumsum(energies)]) / total)
    return shapes, caps, errors


def _cost(shapes, ranks):
    return sum(parameters(s, r) for s, r in zip(shapes, ranks))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("reduction", [0.2, 0.4, 0.6])
def test_global_meets_the_budget_and_beats_uniform(seed, reduction):
    shapes, caps, errors = _layers(np.random.default_rng(seed))
    budget = int((1 - reduction) * sum(m * n for m, n in shapes))
    ranks = global_ranks(shapes, errors, budget, caps)
    # Within the budget, and no single step left that would still fit.
    assert _cost(shapes, ranks) <= budget
    assert budget - _cost(shapes, ranks) < max(m + n for m, n in shapes)
    uniform = uniform_ranks(shapes, reduction, caps)
    assert _cost(shapes, uniform) <= budget
    assert summed_error(errors, ranks) <= summed_error(errors, uniform) + 1e-12


def test_global_is_optimal_on_a_small_problem():
    shapes, caps, errors = _layers(np.random.default_rng(7), count=3)
    shapes = [(8, 6), (6, 9), (7, 7)]
    caps = [break_even_rank(s) for s in shapes]
    errors = [np.linspace(1, 0, cap + 1) ** 3 for cap in caps]
    budget = int(0.5 * sum(m * n for m, n in shapes))
    options = [[None, *range(1, cap + 1)] for cap in caps]
    best = min(
        (summed_error(errors, choice) for choice in itertools.product(*options) if _cost(shapes, choice) <= budget)
    )
    ranks = global_ranks(shapes, errors, budget, caps)
    # The Lagrangian plus greedy fill is near the exhaustive optimum here.
    assert summed_error(errors, ranks) <= best + 0.05


def test_layers_that_cannot_save_stay_dense():
    shapes = [(1, 100), (100, 100)]
    caps = [break_even_rank(s) for s in shapes]
    assert caps[0] == 0
    assert uniform_ranks(shapes, 0.5, caps)[0] is None
    assert all(r is None or r * (m + n) < m * n for r, (m, n) in zip(uniform_ranks(shapes, 0.01, caps), shapes))


def test_energy_ranks():
    errors = [np.array([1.0, 0.5, 0.2, 0.05, 0.0]), np.array([1.0, 0.9, 0.8])]
    assert energy_ranks(errors, 0.9, [4, 2]) == [3, None]
