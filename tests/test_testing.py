"""randla.testing: the planted problems have the answers they claim."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

import randla
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


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: low_rank(30, 20, 25, rng=0), r"`rank` must be an int \[0, 20\]; got 25"),
        (lambda: planted(30, 20, rank=-1, rng=0), r"`rank` must be an int \[0, 20\]; got -1"),
        (lambda: planted(30, 20, rank=2.5, rng=0), r"`rank` must be an int \[0, 20\]; got 2.5"),
        (lambda: planted(30, 20, dtype=np.int64, rng=0), "`dtype` must be a floating or complex dtype"),
        (lambda: psd(20, dtype=np.int32, rng=0), "`dtype` must be a floating or complex dtype"),
    ],
)
def test_planted_rejects_bad_parameters(make, match):
    # A rank above min(m, n) failed on a broadcast deep inside; an integer
    # dtype rounded the planted matrix silently, so S was not its spectrum.
    with pytest.raises(ValueError, match=match):
        make()


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_regression(dtype, untouched_global_rng):
    from randla.testing import Regression, kernel_regression

    p = kernel_regression(20_000, d=6, noise=0.2, dtype=dtype, rng=0)
    assert isinstance(p, Regression)
    X, y = p
    assert X.shape == (20_000, 6) and y.shape == p.f.shape == (20_000,)
    assert X.dtype == y.dtype == p.f.dtype == dtype
    # y = f(X) + noise * N(0, 1), with f smooth and of unit order.
    assert np.std(y - p.f) == pytest.approx(0.2, rel=0.03)
    assert abs(np.mean(y - p.f)) < 0.01
    assert 0.1 < np.var(p.f) < 5
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(p.target(X), p.f, atol=tol)
    near = p.target(X[:100] + 1e-4)
    assert np.max(np.abs(near - p.f[:100])) < 1e-2  # Lipschitz: |grad f| <= sum |w_j| |u_j|
    again = kernel_regression(20_000, d=6, noise=0.2, dtype=dtype, rng=0)
    assert np.array_equal(again.X, X) and np.array_equal(again.y, y)
    assert not np.array_equal(kernel_regression(100, d=6, rng=1).y, kernel_regression(100, d=6, rng=2).y)


@pytest.mark.parametrize("n, n_clusters", [(1000, 10), (50, 20), (20, 20), (7, 1)])
def test_clustered_sizes_are_unequal_and_clusters_far_apart(n, n_clusters):
    from randla.testing import Clustered, clustered

    c = clustered(n, 3, n_clusters, imbalance=100.0, spread=0.5, rng=0)
    assert isinstance(c, Clustered)
    assert c.X.shape == (n, 3) and c.X.dtype == np.float64 and c.labels.shape == (n,)
    sizes = c.sizes
    assert sizes.sum() == n and sizes.size == n_clusters and sizes.min() >= 1
    assert np.all(np.diff(sizes) <= 0)  # cluster 0 is the largest
    if n_clusters > 1 and n >= 1000:
        assert sizes[0] >= 50 * sizes[-1]  # a factor ~imbalance between extremes
    centres = np.array([c.X[c.labels == j].mean(axis=0) for j in range(n_clusters)])
    if n_clusters > 1:
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(n_clusters, 1)]
        assert gaps.min() >= 0.5 * 10 * 0.5  # centres 10 spread apart, up to sampling noise
    # The points come shuffled, and the same rng gives the same points.
    assert not np.all(np.diff(c.labels) >= 0) or n_clusters == 1
    again = clustered(n, 3, n_clusters, imbalance=100.0, spread=0.5, rng=0)
    np.testing.assert_array_equal(c.X, again.X)
    assert clustered(n, 3, n_clusters, dtype=np.float32, rng=0).X.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"n_clusters": 11}, "n_clusters"),
        ({"imbalance": 0.5}, "imbalance"),
        ({"spread": 0.0}, "spread"),
        ({"d": 0}, "`d` must be an int >= 1"),
    ],
)
def test_clustered_rejects_bad_parameters(kwargs, match):
    from randla.testing import clustered

    args = {"d": 2, "n_clusters": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        clustered(10, rng=0, **args)


# ---- ratings


def test_ratings_are_distinct_noisy_low_rank_entries():
    data = randla.testing.ratings(2000, 500, 50000, rank=6, noise=0.3, rng=0)
    rows, cols, values = data
    assert rows.shape == cols.shape == values.shape == (50000,)
    assert np.unique(rows.astype(np.int64) * 500 + cols).size == 50000
    assert rows.max() < 2000 and cols.max() < 500 and rows.min() >= 0
    noise = values - data.truth(rows, cols)
    assert abs(np.std(noise) - 0.3) < 0.01
    assert abs(np.var(data.truth(rows, cols)) - 1.0) < 0.15  # unit-variance signal
    assert np.linalg.matrix_rank(data.row_factors @ data.col_factors.T) == 6


def test_ratings_activity_follows_a_power_law():
    data = randla.testing.ratings(10000, 2000, 100000, rng=1)
    per_row = np.sort(np.bincount(data.rows, minlength=10000))[::-1]
    per_col = np.sort(np.bincount(data.cols, minlength=2000))[::-1]
    # the busiest 1% of users and items hold far more than 1% of the entries
    assert per_row[:100].sum() > 0.08 * 100000
    assert per_col[:20].sum() > 0.1 * 100000
    flat = randla.testing.ratings(10000, 2000, 100000, row_activity=0, col_activity=0, rng=1)
    assert np.bincount(flat.rows, minlength=10000).max() < 40


def test_ratings_split_is_a_partition_and_reproducible():
    data = randla.testing.ratings(500, 300, 8000, rng=2)
    train, test = data.split(0.25, rng=0)
    assert train.rows.size + test.rows.size == 8000 and 0.2 < test.rows.size / 8000 < 0.3
    keys = lambda d: set((d.rows.astype(np.int64) * 300 + d.cols).tolist())  # noqa: E731
    assert keys(train).isdisjoint(keys(test)) and keys(train) | keys(test) == keys(data)
    again = randla.testing.ratings(500, 300, 8000, rng=2)
    np.testing.assert_array_equal(again.values, data.values)


@pytest.mark.parametrize("kwargs, match", [
    (dict(m=0), "positive"), (dict(n_observed=10**9), "n_observed"), (dict(rank=0), "rank"),
    (dict(noise=-1.0), "noise"),
])
def test_ratings_bad_input(kwargs, match):
    args = dict(m=100, n=50, n_observed=500, rank=3) | kwargs
    with pytest.raises(ValueError, match=match):
        randla.testing.ratings(args.pop("m"), args.pop("n"), args.pop("n_observed"), args.pop("rank"), **args)


def test_ratings_takes_numpy_int32_sizes_as_python_ints():
    """m * n of two int32 sizes wrapped around (65536 * 65536 to 0) and refused a valid n_observed."""
    sizes = dict(m=np.int32(65536), n=np.int32(65536), n_observed=np.int32(1000), rank=np.int32(3))
    data = randla.testing.ratings(**sizes, rng=0)  # before: RuntimeWarning (overflow), then ValueError
    plain = randla.testing.ratings(65536, 65536, 1000, rank=3, rng=0)
    assert data.shape == (65536, 65536) and all(type(d) is int for d in data.shape)
    np.testing.assert_array_equal(data.rows, plain.rows)
    np.testing.assert_array_equal(data.values, plain.values)
    with pytest.raises(ValueError, match=r"m\*n/2 = 2500000000\]"):  # int32 would have read 100000 * 50000 wrapped
        randla.testing.ratings(np.int32(100000), np.int32(50000), 2_600_000_000, rank=3, rng=0)
