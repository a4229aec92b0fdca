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


def test_global_keeps_layers_too_small_to_factor_dense():
    shapes = [(32, 32), (1, 32), (32, 1)]
    caps = [break_even_rank(s) for s in shapes]
    errors = [np.linspace(1, 0, caps[0] + 1), np.zeros(1), np.zeros(1)]
    budget = int(0.5 * sum(m * n for m, n in shapes))
    ranks = global_ranks(shapes, errors, budget, caps)
    assert ranks[1:] == [None, None] and ranks[0] is not None
    assert _cost(shapes, ranks) <= budget


def test_uniform_fits_the_budget_where_small_layers_are_held_at_rank_1():
    # Each 16 x 16 layer's 3% share is below rank 1; the large layer keeps less to pay for them.
    shapes = [(16, 16)] * 100 + [(512, 512)]
    caps = [break_even_rank(s) for s in shapes]
    budget = int(0.03 * sum(m * n for m, n in shapes))
    assert _cost(shapes, uniform_ranks(shapes, 0.97, caps)) > budget  # 3% of each is too much
    ranks = uniform_ranks(shapes, 0.97, caps, budget)
    assert _cost(shapes, ranks) <= budget
    assert ranks[:100] == [1] * 100 and ranks[100] == (budget - 100 * 32) // 1024


def test_no_allocation_fits_names_the_largest_reduction():
    shapes = [(16, 16), (4, 16), (64, 64), (1, 8)]
    caps = [break_even_rank(s) for s in shapes]
    total = sum(m * n for m, n in shapes)
    least = 32 + 20 + 128 + 8  # rank 1 each, the last dense
    budget = int(0.01 * total)
    for allocate in (lambda: uniform_ranks(shapes, 0.99, caps, budget),
                     lambda: global_ranks(shapes, [np.linspace(1, 0, c + 1) for c in caps], budget, caps)):
        with pytest.raises(ValueError, match=f"largest reduction possible is {1 - least / total:.4f}"):
            allocate()
