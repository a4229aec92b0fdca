"""randla.testing: the planted problems have the answers they claim."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from randla.testing import DECAYS, Planted, low_rank, planted, psd, sparse_random, spectrum


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("k", [1, 2, 50])
def test_spectrum_shape_and_order(decay, k):
    s = spectrum(k, decay)
    assert s.shape == (k,) and s.dtype == np.float64
    assert s[0] == 1.0
    assert np.all(np.diff(s) <= 0) and np.all(s > 0)


def test_spectrum_formulas():
    i = np.arange(1, 11)
    np.testing.assert_allclose(spectrum(10, "exponential"), 0.8 ** (i - 1))
    np.testing.assert_allclose(spectrum(10, "exponential", rate=0.5), 0.5 ** (i - 1))
    np.testing.assert_allclose(spectrum(10, "polynomial"), 1.0 / i)
    np.testing.assert_allclose(spectrum(10, "polynomial", rate=0.5), i**-0.5)
    np.testing.assert_array_equal(spectrum(10, "flat"), np.ones(10))


def test_spectrum_sigmoid_drops_to_a_plateau():
    s = spectrum(400, "sigmoid")
    assert s[0] == 1.0
    # sigma_i = 1 / (1 + exp((i - k/4) / (k/20))) + 1e-3, normalised by sigma_1.
    first = 1 / (1 + np.exp((1 - 100) / 20)) + 1e-3
    last = 1 / (1 + np.exp((400 - 100) / 20)) + 1e-3
    assert s[-1] == pytest.approx(last / first, rel=1e-12)
    assert s[-1] == pytest.approx(1e-3, rel=0.01)
    # The drop is around i = k / 4.
    assert s[60] > 0.5 > s[140]


def test_spectrum_unknown_decay():
    with pytest.raises(ValueError, match="`decay` must be one of .*got 'linear'"):
        spectrum(5, "linear")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("shape", [(60, 40), (40, 60), (30, 30)])
@pytest.mark.parametrize("decay", DECAYS)
def test_planted_has_its_spectrum(dtype, shape, decay):
    p = planted(*shape, decay, dtype=dtype, rng=0)
    assert isinstance(p, Planted)
    assert p.A.shape == shape and p.A.dtype == dtype
    assert p.S.shape == (min(shape),)
    s = np.linalg.svd(p.A.astype(np.complex128), compute_uv=False)
    tol = 1e-5 if dtype in (np.float32, np.complex64) else 1e-12
    np.testing.assert_allclose(s, p.S, atol=tol * p.S[0])
    np.testing.assert_allclose(p.S, spectrum(min(shape), decay))


def test_planted_doc_example():
    p = planted(200, 100, decay="polynomial", rate=0.5, rng=0)
    assert round(float(p.S[3]), 3) == 0.5


def test_planted_complex_is_complex():
    A = planted(30, 20, dtype=np.complex128, rng=0).A
    assert np.abs(A.imag).max() > 0.01


def test_planted_rank_noise_scale():
    p = planted(80, 60, "flat", rank=5, rng=0)
    s = np.linalg.svd(p.A, compute_uv=False)
    np.testing.assert_allclose(s[:5], 1.0, rtol=1e-12)
    assert np.all(s[5:] <= 1e-12)
    assert np.all(p.S[5:] == 0)
    noisy = planted(80, 60, "flat", rank=5, noise=0.01, rng=0)
    s = np.linalg.svd(noisy.A, compute_uv=False)
    # Noise of norm about 2 * noise on top of the planted part.
    assert 0.005 <= s[5] <= 0.03
    assert np.all(np.isfinite(noisy.A))
    assert np.linalg.norm(noisy.A - p.A, 2) <= 2.5 * 0.01
    big = planted(80, 60, rng=0, scale=1e150)
    np.testing.assert_allclose(big.A / 1e150, planted(80, 60, rng=0).A, rtol=1e-14)
    np.testing.assert_allclose(big.S, 1e150 * spectrum(60, "polynomial"))


def test_planted_reproducible(untouched_global_rng):
    a = planted(30, 20, rng=5).A
    assert np.array_equal(a, planted(30, 20, rng=5).A)
    assert np.array_equal(a, planted(30, 20, rng=np.random.default_rng(5)).A)
    assert not np.array_equal(a, planted(30, 20, rng=6).A)


@pytest.mark.parametrize("rank", [1, 7, 20])
def test_low_rank(rank):
    A = low_rank(50, 20, rank, rng=0)
    s = np.linalg.svd(A, compute_uv=False)
    np.testing.assert_allclose(s[:rank], 1.0 / np.arange(1, rank + 1), rtol=1e-12)
    assert np.all(s[rank:] <= 1e-12)
    assert np.linalg.matrix_rank(A) == rank
    assert low_rank(50, 20, rank, dtype=np.float32, rng=0).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
@pytest.mark.parametrize("decay", ["exponential", "polynomial"])
def test_psd(dtype, decay):
    A = psd(40, decay=decay, dtype=dtype, rng=0)
    assert A.shape == (40, 40) and A.dtype == dtype
    assert np.array_equal(A, A.conj().T)  # exactly Hermitian
    w = np.linalg.eigvalsh(A.astype(np.complex128))[::-1]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(w, spectrum(40, decay), atol=tol)
    low = psd(40, rank=6, dtype=dtype, rng=0)
    w = np.linalg.eigvalsh(low.astype(np.complex128))
    assert np.all(w >= -tol) and np.sum(w > 1e-3) == 6


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_random(fmt, dtype):
    A = sparse_random(200, 100, 1000, format=fmt, dtype=dtype, rng=0)
    assert sp.issparse(A) and A.format == fmt and A.shape == (200, 100)
    assert A.dtype == dtype
    dense = A.toarray()
    assert 900 <= np.count_nonzero(dense) <= 1000  # duplicates positions merge
    assert np.array_equal(dense, sparse_random(200, 100, 1000, format=fmt, dtype=dtype, rng=0).toarray())
    assert not np.array_equal(dense, sparse_random(200, 100, 1000, format=fmt, dtype=dtype, rng=1).toarray())


def test_sparse_random_power_law_weights():
    """exponent > 0 concentrates the mass on a few rows; 0 spreads it."""
    heavy = sparse_random(500, 300, 20000, exponent=1.0, rng=0).toarray()
    flat = sparse_random(500, 300, 20000, exponent=0.0, rng=0).toarray()

    def top_share(M):
        rows = np.sort(np.sum(M**2, axis=1))[::-1]
        return rows[:25].sum() / rows.sum()

    assert top_share(heavy) > 2 * top_share(flat)
    s_heavy = np.linalg.svd(heavy, compute_uv=False)
    s_flat = np.linalg.svd(flat, compute_uv=False)
    assert s_heavy[20] / s_heavy[0] < s_flat[20] / s_flat[0]


@given(
    st.integers(1, 60),
    st.integers(1, 60),
    st.sampled_from(DECAYS),
    st.sampled_from([np.float32, np.float64, np.complex128]),
    st.integers(0, 2**32 - 1),
)
def test_planted_hypothesis(m, n, decay, dtype, seed):
    p = planted(m, n, decay, dtype=dtype, rng=seed)
    assert p.A.shape == (m, n) and p.A.dtype == dtype
    s = np.linalg.svd(p.A.astype(np.complex128), compute_uv=False)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(s, p.S, atol=tol)
