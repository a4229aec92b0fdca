"""Callable kernels written for scikit-learn, k(x, y) of two points, and Nystroem's scikit-learn signature."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.kernel_approximation import Nystroem as SklearnNystroem
from sklearn.kernel_ridge import KernelRidge as ExactKernelRidge
from sklearn.metrics.pairwise import pairwise_kernels

import randla


def points(n, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def pair_rbf(x, y, gamma=0.5):
    """scikit-learn's form: two 1-D points in, one number out."""
    return np.exp(-gamma * np.sum((x - y) ** 2))


def block_rbf(A, B, gamma=0.5):
    return np.exp(-gamma * cdist(A, B, "sqeuclidean"))


def test_a_kernel_of_two_points_is_evaluated_pair_by_pair():
    X, Y = points(40), points(7, seed=1)
    K = randla.kernel_operator(X, kernel=pair_rbf, gamma=0.3)
    assert K.kernel.pairwise
    expected = pairwise_kernels(X, metric=pair_rbf, gamma=0.3)
    np.testing.assert_allclose(K.block(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(K.matmat(np.eye(40)), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(K.diagonal(), 1.0, atol=0)
    cross = randla.kernel_operator(X, Y, kernel=pair_rbf, gamma=0.3).block()
    np.testing.assert_allclose(cross, pairwise_kernels(X, Y, metric=pair_rbf, gamma=0.3), rtol=0, atol=1e-15)
    assert not randla.kernel_operator(X, kernel=block_rbf).kernel.pairwise
    # np.dot of two blocks of 3 points in 3 dimensions would be a (3, 3) block, A B and not A B^T.
    dot = randla.kernel_operator(X, kernel=lambda x, y: np.dot(x, y))
    assert dot.kernel.pairwise and np.allclose(dot.block(), X @ X.T, rtol=0, atol=1e-14)


def test_points_of_sparse_data_come_as_one_row_matrices_as_in_scikit_learn():
    X = sp.random_array((30, 50), density=0.2, format="csr", rng=0)
    seen = []

    def linear(x, y):
        seen.append(x.shape)
        return x.multiply(y).sum()

    K = randla.kernel_operator(X, kernel=linear)
    np.testing.assert_allclose(K.block(), pairwise_kernels(X, metric="linear"), rtol=0, atol=1e-14)
    assert set(seen[-5:]) == {(1, 50)}


def test_nystroem_with_a_kernel_of_two_points_equals_the_block_form():
    X, X_new = points(200), points(20, seed=1)
    # Uniform landmarks do not look at kernel values: both forms choose the same ones.
    pair = randla.Nystroem(pair_rbf, n_components=40, landmarks="uniform", random_state=0)
    block = randla.Nystroem(block_rbf, n_components=40, landmarks="uniform", random_state=0)
    Z = pair.fit_transform(X)
    np.testing.assert_array_equal(pair.component_indices_, block.fit(X).component_indices_)
    np.testing.assert_allclose(Z, block.transform(X), rtol=0, atol=1e-10)
    np.testing.assert_allclose(pair.transform(X_new), block.transform(X_new), rtol=0, atol=1e-10)
    # And its features reproduce that kernel as scikit-learn's Nystroem does, from better landmarks.
    K = pairwise_kernels(X, metric=pair_rbf)
    ours = randla.Nystroem(pair_rbf, n_components=40, random_state=0).fit_transform(X)
    theirs = SklearnNystroem(pair_rbf, n_components=40, random_state=0).fit_transform(X)
    assert np.trace(K - ours @ ours.T) < np.trace(K - theirs @ theirs.T)


def test_kernel_params_reach_a_kernel_of_two_points():
    X, y = points(150), np.sin(points(150)[:, 0])
    exact = ExactKernelRidge(alpha=0.1, kernel=pair_rbf, kernel_params={"gamma": 2.0}).fit(X, y).predict(X[:10])
    model = randla.KernelRidge(alpha=0.1, kernel=pair_rbf, kernel_params={"gamma": 2.0}).fit(X, y)
    np.testing.assert_allclose(model.predict(X[:10]), exact, rtol=1e-9, atol=1e-12)


def test_a_callable_of_neither_form_is_told_how_to_write_it():
    X = points(10)
    with pytest.raises(ValueError, match=r"two blocks of points A \(p, d\) and B \(q, d\) and return the \(p, q\) "
                                         r"block k\(A, B\), e\.g\. lambda A, B: .*or, as scikit-learn's, take two "
                                         r"points and return the number k\(x, y\)") as info:
        randla.Nystroem(lambda x, y: {"k": 1}).fit(X)
    assert "returned a dict, and on two points it returned a dict" in str(info.value)
    with pytest.raises(ValueError, match="it raised ZeroDivisionError") as info:
        randla.kernel_operator(X, kernel=lambda x, y: 1 / 0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_nystroem_takes_n_jobs_and_ignores_it():
    X = points(100)
    plain = randla.Nystroem(n_components=20, random_state=0).fit_transform(X)
    for n_jobs in (None, 1, -1, 4):
        model = randla.Nystroem(n_components=20, random_state=0, n_jobs=n_jobs)
        assert model.get_params()["n_jobs"] == n_jobs
        np.testing.assert_array_equal(model.fit_transform(X), plain)
    with pytest.raises(ValueError, match="`n_jobs` must be None or an int"):
        randla.Nystroem(n_jobs="all").fit(X)
