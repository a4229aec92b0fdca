"""Block preconditioned CG: what it reports against residuals computed afresh."""

from __future__ import annotations

import numpy as np

from randla.kernels.pcg import block_pcg, nystrom_preconditioner


def true_residual(A, x, b):
    return float((np.linalg.norm(A @ x - b, axis=0) / np.linalg.norm(b, axis=0)).max())


def test_converged_is_checked_against_the_true_residual():
    # alpha = 1e-7 and ~2000 iterations: the recursively updated residual
    # drifts from b - A x by rounding to 30x below the true one, which had
    # stalled above tol; the flag must follow the true residual.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 3))
    b = (np.sin(X[:, 0]) + 0.1 * rng.standard_normal(200))[:, None]
    K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(axis=2))
    A = K + 1e-7 * np.eye(200)
    w, V = np.linalg.eigh(K)
    apply = nystrom_preconditioner(V[:, ::-1][:, :66], np.maximum(w[::-1][:66], 0), 1e-7)
    r = block_pcg(lambda U: A @ U, b, precondition=apply, tol=1e-10, max_iter=3000)
    true = true_residual(A, r.x, b)
    assert r.converged == (true <= 1e-10)
    assert abs(r.residuals[-1] - true) <= 0.1 * true
    assert len(r.residuals) == r.n_iter + 1 and r.n_iter <= 3000


def test_honest_convergence_costs_nothing_extra_when_well_conditioned():
    A = np.diag(np.arange(1.0, 11.0))
    b = np.ones((10, 2))
    r = block_pcg(lambda V: A @ V, b, tol=1e-10)
    assert r.converged and r.n_iter == 10
    assert true_residual(A, r.x, b) <= 1e-10
    assert r.residuals[0] == 1.0 and r.residuals[-1] <= 1e-10


def test_max_iter_bounds_the_iterations_and_unconverged_is_reported():
    A = np.diag(np.arange(1.0, 11.0))
    r = block_pcg(lambda V: A @ V, np.ones((10, 1)), tol=1e-10, max_iter=1)
    assert not r.converged and r.n_iter == 1 and len(r.residuals) == 2
    assert abs(r.residuals[-1] - true_residual(A, r.x, np.ones((10, 1)))) <= 1e-12


def test_right_hand_sides_far_from_unit_scale():
    """The inner products square b's entries: at 1e-170 they underflowed (x = 0,
    reported converged) and at 1e200 overflowed (x = 0, not converged)."""
    rng = np.random.default_rng(0)
    G = rng.standard_normal((60, 60))
    A = G @ G.T / 60 + np.eye(60)
    b = rng.standard_normal((60, 1))
    exact = np.linalg.solve(A, b)
    for scale in (1e-170, 1.0, 1e200):
        r = block_pcg(lambda V: A @ V, b * scale, tol=1e-10, max_iter=200)
        assert r.converged
        np.testing.assert_allclose(r.x / scale, exact, rtol=1e-8, atol=1e-8 * np.abs(exact).max())
    both = block_pcg(lambda V: A @ V, np.hstack([b * 1e-170, b * 1e200]), tol=1e-10, max_iter=200)
    np.testing.assert_allclose(both.x / [1e-170, 1e200], np.hstack([exact, exact]), rtol=1e-8, atol=1e-8)


def test_preconditioners_take_any_real_alpha_or_one_per_column():
    from randla.kernels.pcg import PSDFactor, falkon_preconditioner

    rng = np.random.default_rng(0)
    C = rng.random((50, 4))
    W = C[:4] @ C[:4].T + np.eye(4)
    V = rng.standard_normal((4, 3))
    for alpha in (2, np.float32(2.0), 2.0):
        apply = falkon_preconditioner(PSDFactor(W, 1e-16), C, 50, alpha=alpha)
        np.testing.assert_allclose(apply((C.T @ C + 2.0 * W) @ V), V, rtol=1e-10)  # the whole C: exact
    alphas = np.array([0.5, 2.0, 2.0])
    apply = falkon_preconditioner(PSDFactor(W, 1e-16), C, 50, alpha=alphas)
    H = [C.T @ C + a * W for a in alphas]
    np.testing.assert_allclose(apply(np.column_stack([H[j] @ V[:, j] for j in range(3)])), V, rtol=1e-10)
    U, S = np.eye(6)[:, :2], np.array([3.0, 1.0])
    per_column = nystrom_preconditioner(U, S, mu=np.array([1.0, 3.0]))(np.eye(6)[:, :2])
    np.testing.assert_allclose(per_column.diagonal(), [(1 + 1) / (3 + 1), (1 + 3) / (1 + 3)])
