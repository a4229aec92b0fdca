"""Kernel functions k(A, B) against exact values computed from differences."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest
import torch

from randla.kernels import kernel_operator
from randla.kernels.functions import make_kernel


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype,offset,tol", [(np.float32, 1000.0, 1e-5), (np.float64, 1e6, 1e-12)])
def test_rbf_is_accurate_far_from_the_origin(backend, dtype, offset, tol):
    # Distances do not depend on where the points are; the Gram expansion's
    # rounding, of order eps ||x||^2, must not show through.
    X = offset + 0.5 * np.random.default_rng(0).standard_normal((60, 3))
    X = X.astype(dtype)
    exact = np.exp(-0.5 * ((X[:, None].astype(np.float64) - X[None]) ** 2).sum(axis=2))
    A = torch.from_numpy(X) if backend == "torch" else X
    ns = torch if backend == "torch" else xp
    K = make_kernel("rbf", 3, {"gamma": 0.5})(ns, A, A[:20])
    K = K.numpy() if backend == "torch" else K
    assert K.dtype == dtype
    assert np.abs(K - exact[:, :20]).max() <= tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matern_far_out_is_zero_not_nan(dtype):
    # s^2 overflowed for distances beyond ~1e19 length scales in float32: inf * 0 = NaN.
    X = np.array([[0.0], [1e25]], dtype=dtype)
    K = kernel_operator(X, kernel="matern", nu=2.5, length_scale=1e-3).block()
    np.testing.assert_array_equal(K, np.eye(2, dtype=dtype))
