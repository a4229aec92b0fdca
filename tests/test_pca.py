"""randla.pca and the PCA estimator: accuracy against exact PCA (the SVD of
the explicitly centred data), containers, the variance-share mode, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.decomposition import PCA as SklearnPCA

import randla
from randla.testing import low_rank, planted, sparse_random
from conftest import dask_array, in_container, sin_max_angle, to_np

M, N = 300, 80


def data(dtype=np.float64, offset=3.0, rng=0):
    """Rows with a fast-decaying covariance spectrum around a non-zero mean."""
    A = planted(M, N, decay="exponential", rate=0.7, dtype=dtype, rng=rng).A
    shift = offset * (1 + np.arange(N) / N)
    return (A + shift).astype(dtype)


def exact_pca(X):
    """Means, singular values and right singular vectors of the centred X, in double."""
    X = np.asarray(X, dtype=np.complex128 if np.iscomplexobj(X) else np.float64)
    mean = X.mean(axis=0)
    _, s, vh = np.linalg.svd(X - mean, full_matrices=False)
    return mean, s, vh


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_exact_pca(k):
    X = data()
    mean, s, vh = exact_pca(X)
    r = randla.pca(X, k, rng=0)
    assert r.rank == k and r.components.shape == (k, N) and r.scores.shape == (M, k)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(r.S, s[:k], rtol=1e-6)
    np.testing.assert_allclose(r.explained_variance, s[:k] ** 2 / (M - 1), rtol=1e-6)
    np.testing.assert_allclose(r.explained_variance_ratio, s[:k] ** 2 / np.sum(s**2), rtol=1e-6)
    assert r.total_variance == pytest.approx(np.sum(s**2) / (M - 1), rel=1e-12)
    assert sin_max_angle(r.Vh.T, vh[:k].T) < 1e-5
    # Scores are the centred rows in principal coordinates.
    np.testing.assert_allclose(r.transform(X), (X - mean) @ r.Vh.T, atol=1e-12)
    np.testing.assert_allclose(r.scores, r.transform(X), atol=1e-10)
    # Eckart-Young: the reconstruction error of rank k is the optimum's.
    error = np.linalg.norm(X - r.reconstruct())
    assert error <= np.sqrt(np.sum(s[k:] ** 2)) * (1 + 1e-6)


def test_explained_variance_ratio_is_exact_at_any_rank():
    """The ratios use the exact total variance: they sum to 1 at full rank
    (up to the rounding of the means, 10^4 times the spread here)."""
    X = data()
    r = randla.pca(X, N, rng=0)
    assert float(np.sum(r.explained_variance_ratio)) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("share", [0.5, 0.9, 0.99, 0.9999])
def test_tol_gives_the_fewest_components_that_explain_the_share(share):
    X = data()
    _, s, _ = exact_pca(X)
    cumulative = np.cumsum(s**2) / np.sum(s**2)
    fewest = int(np.searchsorted(cumulative, share)) + 1
    r = randla.pca(X, tol=np.sqrt(1 - share), rng=0)
    assert r.converged and r.rank == fewest
    assert float(np.sum(r.explained_variance_ratio)) >= share
    assert r.error_estimate == pytest.approx(np.sqrt(1 - cumulative[fewest - 1]), rel=1e-3)


@pytest.mark.parametrize(
    "container", ["numpy", "csr", "torch", "torch_coo", "torch_csr", "dask", "linear_operator"]
)
def test_containers_match_dense(container):
    S = sparse_random(M, N, 3000, rng=0)
    X = S.toarray()
    mean, s, vh = exact_pca(X)
    original = in_container(S, container)
    r = randla.pca(original, 6, power_iters=6, rng=0)
    np.testing.assert_allclose(to_np(r.mean), mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_np(r.S), s[:6], rtol=1e-5)
    if container == "linear_operator":  # products only: the total is unknown
        assert r.centered_norm is None and r.explained_variance_ratio is None and r.total_variance is None
    else:
        np.testing.assert_allclose(to_np(r.explained_variance_ratio), s[:6] ** 2 / np.sum(s**2), rtol=1e-5)
    if container != "linear_operator":
        # transform takes the data in its own container, without densifying it.
        np.testing.assert_allclose(to_np(r.transform(original)), (X - mean) @ to_np(r.Vh).T, atol=1e-12)
    assert np.array_equal(S.toarray(), X)  # never modified


def test_factors_come_back_in_the_input_library():
    X = data(np.float32)
    for wrap, kind in [(torch.as_tensor, torch.Tensor), (dask_array, type(dask_array(X)))]:
        r = randla.pca(wrap(X), 4, rng=0)
        for part in (r.U, r.S, r.Vh, r.mean):
            assert isinstance(part, kind) and part.dtype == (torch.float32 if kind is torch.Tensor else np.float32)
    r = randla.pca(X, 4, rng=0)
    assert r.S.dtype == np.float32 and r.mean.dtype == np.float32


def test_single_precision_data_far_from_zero():
    """Means 10^3 times the spread in float32: the exact total keeps the
    ratios right; products lose about eps * 10^3 of the spectrum."""
    rng = np.random.default_rng(0)
    spread = planted(2000, 50, decay="exponential", rate=0.8, rng=0).A * np.sqrt(2000 * 50)
    X = (spread + 1e3 * (1 + rng.random(50))).astype(np.float32)
    _, s, _ = exact_pca(X)
    r = randla.pca(X, 5, rng=0)
    np.testing.assert_allclose(r.explained_variance_ratio, s[:5] ** 2 / np.sum(s**2), rtol=1e-3)
    assert r.total_variance == pytest.approx(np.sum(s**2) / 1999, rel=1e-5)


@pytest.mark.parametrize("power_iters", [0, 2])
def test_dask_passes(power_iters):
    """Out of core, a pass is the cost: one for the means and the total
    variance together, then 2q + 2 for the SVD."""
    import collections
    import threading

    import dask.array as da

    X = data()
    reads, lock = collections.Counter(), threading.Lock()

    def load(block, block_info=None):
        with lock:
            reads[tuple(block_info[0]["chunk-location"])] += 1
        return block

    D = da.from_array(X, chunks=(70, 30)).map_blocks(load, dtype=X.dtype)
    r = randla.pca(D, 5, power_iters=power_iters, rng=0)
    assert len(reads) == 5 * 3 and set(reads.values()) == {2 * power_iters + 3}
    _, s, _ = exact_pca(X)
    rtol = 1e-5 if power_iters else 1e-2  # one sketch alone: a percent off
    np.testing.assert_allclose(to_np(r.explained_variance_ratio), s[:5] ** 2 / np.sum(s**2), rtol=rtol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_variances_beyond_the_square_root_of_its_range(dtype):
    """Singular values above 256 square past float16's 65504; the variances do not."""
    X = planted(3000, 40, "polynomial", rate=1.0, rng=0).A * 4000
    _, s, _ = exact_pca(X)
    r = randla.pca(torch.as_tensor(X).to(dtype), 5, rng=0)
    assert float(r.S[0]) > 256
    variance = r.explained_variance.double().numpy()
    np.testing.assert_allclose(variance, s[:5] ** 2 / 2999, rtol=2e-2)


def test_complex_data():
    X = data() + 1j * data(rng=1)
    mean, s, vh = exact_pca(X)
    r = randla.pca(X, 5, rng=0)
    np.testing.assert_allclose(r.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(r.S, s[:5], rtol=1e-6)
    np.testing.assert_allclose(r.transform(X), (X - mean) @ r.Vh.conj().T, atol=1e-10)


@pytest.mark.parametrize("wrap", [torch.as_tensor, lambda X: torch.as_tensor(X).to_sparse_coo()])
def test_integer_torch_data_transforms_like_the_fit(wrap):
    """Integers are decomposed in float64; transform promotes them the same way
    (torch refuses an int64 @ float64 product)."""
    X = np.round(data() * 10).astype(np.int64)
    mean, s, _ = exact_pca(X)
    r = randla.pca(wrap(X), 4, rng=0)
    Z = r.transform(wrap(X))
    assert Z.dtype == torch.float64
    np.testing.assert_allclose(Z.numpy(), (X - mean) @ r.Vh.numpy().T, atol=1e-12 * s[0])


@pytest.mark.parametrize("fit_dtype, data_dtype", [(torch.float32, torch.float64), (torch.bfloat16, torch.float32),
                                                    (torch.float64, torch.float32)])
@pytest.mark.parametrize("sparse", [False, True])
def test_torch_data_of_another_float_dtype_is_promoted_as_numpy_would(fit_dtype, data_dtype, sparse):
    X = data()
    r = randla.pca(torch.as_tensor(X).to(fit_dtype), 4, rng=0)
    new = torch.as_tensor(X).to(data_dtype)
    Z = r.transform(new.to_sparse_csr() if sparse else new)
    common = torch.promote_types(fit_dtype, data_dtype)
    assert Z.dtype == common
    V, mean = r.Vh.double().numpy().T, r.mean.double().numpy()
    np.testing.assert_allclose(Z.double().numpy(), (new.double().numpy() - mean) @ V, rtol=2e-2, atol=2e-2 * np.abs(X).max())
    back = r.inverse_transform(torch.zeros(2, 4, dtype=data_dtype))
    assert back.dtype == common and torch.allclose(back.double(), r.mean.double().expand(2, -1))
    with pytest.raises(TypeError, match="computed in torch: pass X as a torch tensor; got numpy.ndarray"):
        r.transform(X)


@pytest.mark.parametrize("library, dtype", [("torch", torch.bfloat16), ("torch", torch.float16), ("numpy", np.float16)])
def test_half_precision_transform_is_computed_in_float32_with_the_fits_means(library, dtype):
    """bf16/fp16 in, computed in float32: transform and inverse_transform round once,
    at the end, as scores do. Products in the half precision, and a mean rounded to
    it (a bf16 ulp is 0.25 at 50), were 10 times as far from the exact answer."""
    Z = low_rank(2000, 64, rank=4, noise=0.05, rng=0)
    X64 = Z / Z.std() + 50.0 * (1 + np.arange(64) / 64)  # offsets 50-100 times the spread
    wrap = torch.as_tensor if library == "torch" else np.asarray
    X = wrap(X64).to(dtype) if library == "torch" else X64.astype(dtype)
    r = randla.pca(X, 4, rng=0)
    data, V = to_np(X).astype(np.float64), to_np(r.Vh).astype(np.float64).T
    mean = data.mean(axis=0)
    exact = (data - mean) @ V  # in double, from the same half-precision data and axes
    floor = np.linalg.norm(to_np(wrap(exact).to(dtype) if library == "torch" else exact.astype(dtype)) - exact)

    T = r.transform(X)
    assert T.dtype == dtype
    assert np.linalg.norm(to_np(T).astype(np.float64) - exact) <= 1.5 * floor
    # The training rows' coordinates are the fit's scores, up to both roundings and the fit's own error.
    assert np.linalg.norm(to_np(T).astype(np.float64) - to_np(r.scores).astype(np.float64)) <= 4 * floor

    back = r.inverse_transform(T)
    assert back.dtype == dtype
    exact_back = to_np(T).astype(np.float64) @ V.T + mean
    rounded = wrap(exact_back).to(dtype) if library == "torch" else exact_back.astype(dtype)
    floor_back = np.linalg.norm(to_np(rounded).astype(np.float64) - exact_back)
    assert np.linalg.norm(to_np(back).astype(np.float64) - exact_back) <= 1.1 * floor_back  # rounded twice: 1.4


def test_hybrid_torch_sparse_data_transform_as_their_dense_matrix():
    """A sparse embedding's gradient (dense rows under a sparse row index) is fitted
    and transformed as the matrix it holds; torch's products refuse it as it is."""
    X = data()
    rows = torch.arange(0, M, 3)
    hybrid = torch.sparse_coo_tensor(rows[None, :], torch.as_tensor(X)[rows], (M, N), check_invariants=True)
    dense = hybrid.to_dense().numpy()
    mean, s, _ = exact_pca(dense)
    r = randla.pca(hybrid, 5, rng=0)
    np.testing.assert_allclose(r.mean.numpy(), mean, rtol=1e-13)
    np.testing.assert_allclose(r.S.numpy(), s[:5], rtol=1e-6)
    np.testing.assert_allclose(r.transform(hybrid).numpy(), (dense - mean) @ r.Vh.numpy().T, atol=1e-12 * s[0])


def test_inverse_transform_reconstructs():
    X = data()
    r = randla.pca(X, 10, rng=0)
    np.testing.assert_allclose(r.inverse_transform(r.transform(X)), r.reconstruct(), atol=1e-12)


def test_same_rng_same_answer_and_rank_in_wide_data():
    X = data()[:40]  # wide: 40 x 80
    one, two = randla.pca(X, 8, rng=3), randla.pca(X, 8, rng=3)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    _, s, _ = exact_pca(X)
    np.testing.assert_allclose(one.S, s[:8], rtol=1e-6)


def test_bad_input():
    X = data()
    with pytest.raises(ValueError, match="at least 2 samples.*got 1"):
        randla.pca(X[:1], 1)
    with pytest.raises(ValueError, match="rank"):
        randla.pca(X, N + 1)
    with pytest.raises(ValueError, match="rank.*or `tol`"):
        randla.pca(X)
    with pytest.raises(ValueError, match="NaN|Inf"):
        randla.pca(np.where(X > 4, np.nan, X), 2)
    r = randla.pca(X, 3, rng=0)
    with pytest.raises(ValueError, match=r"shape \(p, 80\).*\(5, 79\)"):
        r.transform(X[:5, :79])
    with pytest.raises(ValueError, match=r"shape \(p, 3\)"):
        r.inverse_transform(np.ones((5, 4)))


# The estimator (sklearn's conformance checks run in test_estimators.py).


@pytest.mark.parametrize("whiten", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_estimator_matches_sklearn_exact_pca(whiten, sparse):
    X = data()
    ours = randla.PCA(n_components=6, whiten=whiten, random_state=0)
    exact = SklearnPCA(n_components=6, whiten=whiten, svd_solver="full").fit(X)
    Z = ours.fit_transform(sp.csr_array(X) if sparse else X)
    for name in ["explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(exact, name), rtol=1e-6)
    assert ours.noise_variance_ == pytest.approx(exact.noise_variance_, rel=1e-6)
    signs = np.sign(np.sum(ours.components_ * exact.components_, axis=1))
    np.testing.assert_allclose(ours.components_, exact.components_ * signs[:, None], atol=1e-6)
    np.testing.assert_allclose(Z, exact.transform(X) * signs, atol=1e-6)
    np.testing.assert_allclose(ours.transform(X), Z, atol=1e-10)
    np.testing.assert_allclose(ours.inverse_transform(Z), exact.inverse_transform(exact.transform(X)), atol=1e-6)


def test_estimator_variance_share_picks_sklearns_count():
    X = data()
    for share in [0.8, 0.95, 0.999]:
        ours = randla.PCA(n_components=share, random_state=0).fit(X)
        exact = SklearnPCA(n_components=share, svd_solver="full").fit(X)
        assert ours.n_components_ == exact.n_components_
        assert float(np.sum(ours.explained_variance_ratio_)) >= share


def test_estimator_keeps_float32_and_sparse_input():
    X = sp.csr_array(data(np.float32))
    est = randla.PCA(n_components=3, random_state=0)
    Z = est.fit_transform(X)
    assert Z.dtype == np.float32 and est.components_.dtype == np.float32
    assert sp.issparse(X)  # not densified in place
    assert list(est.get_feature_names_out()) == ["pca0", "pca1", "pca2"]


@pytest.mark.parametrize("bad", [0, 1.0, 1.5, -0.2, N + 1, "mle"])
def test_estimator_bad_n_components(bad):
    with pytest.raises(ValueError, match="n_components"):
        randla.PCA(n_components=bad).fit(data())


@pytest.mark.parametrize("sparse", [False, True])
def test_estimator_log_likelihood_matches_sklearn(sparse):
    """Probabilistic PCA's log-likelihood, evaluated through the k axes,
    equals scikit-learn's through the n x n covariance."""
    X = data()
    ours = randla.PCA(n_components=6, random_state=0).fit(X)
    exact = SklearnPCA(n_components=6, svd_solver="full").fit(X)
    new = data(rng=1)[:50]
    scores = ours.score_samples(sp.csr_array(new) if sparse else new)
    np.testing.assert_allclose(scores, exact.score_samples(new), rtol=1e-6)
    assert ours.score(new) == pytest.approx(exact.score(new), rel=1e-6)


def test_estimator_log_likelihood_picks_the_planted_rank():
    """Cross-validated likelihood, as GridSearchCV uses it, peaks at the rank
    of the signal in isotropic noise."""
    from sklearn.model_selection import GridSearchCV

    X = randla.testing.low_rank(600, 40, rank=5, noise=0.05, rng=0) * 30 + 1.0
    search = GridSearchCV(randla.PCA(random_state=0), {"n_components": [2, 3, 4, 5, 6, 8, 12]}, cv=3).fit(X)
    assert search.best_params_["n_components"] == 5


@pytest.mark.parametrize("scale", [1e20, 1e-22])
def test_estimator_single_precision_far_from_unit_scale(scale):
    """Float32 variances square the data's scale out of range (explained_variance_
    is inf at 1e20, 0 at 1e-22); whitening, the noise variance and the likelihood
    take them in double from the singular values, so none of them is lost."""
    X = data()
    exact = SklearnPCA(n_components=4, svd_solver="full").fit(X)
    exact_white = SklearnPCA(n_components=4, whiten=True, svd_solver="full").fit(X)
    small = (X * scale).astype(np.float32)
    with np.errstate(over="ignore"):  # explained_variance_ itself: inf in float32
        ours = randla.PCA(n_components=4, whiten=True, random_state=0).fit(small)
    assert ours.noise_variance_ == pytest.approx(exact.noise_variance_ * scale**2, rel=1e-4)
    Z = ours.transform(small)
    assert Z.dtype == np.float32
    signs = np.sign(np.sum(ours.components_ * exact.components_, axis=1))
    np.testing.assert_allclose(Z, exact_white.transform(X) * signs, atol=1e-4)
    back = exact.inverse_transform(exact.transform(X))
    np.testing.assert_allclose(ours.inverse_transform(Z) / scale, back, atol=1e-4)
    # Densities scale as scale^-n_features.
    assert ours.score(small) == pytest.approx(exact.score(X) - N * np.log(scale), rel=1e-5)


def test_estimator_singular_covariance_cannot_score():
    X = data()[:30]  # 30 samples, 80 features: all 30 components leave no noise variance
    est = randla.PCA(random_state=0).fit(X)
    with pytest.raises(ValueError, match="singular.*fewer components"):
        est.score(X)


@pytest.mark.parametrize("estimator", [randla.PCA(n_components=6, random_state=0),
                                       randla.IncrementalPCA(n_components=6, sketch_size=N)])  # N rows: exact
def test_estimator_covariance_and_precision_match_sklearn(estimator):
    X = data()
    ours = estimator.fit(X)
    exact = SklearnPCA(n_components=6, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.get_covariance(), exact.get_covariance(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.get_precision(), exact.get_precision(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.get_precision() @ ours.get_covariance(), np.eye(X.shape[1]), atol=1e-8)


@pytest.mark.parametrize("container", ["numpy", "torch", "dask"])
def test_factors_reconstruct_the_data_with_its_mean(container):
    """estimate_error and residual measure X itself: the factors carry the mean."""
    X = low_rank(300, 40, rank=5, rng=0) + 3.0
    data = {"numpy": X, "torch": torch.from_numpy(X), "dask": dask_array(X)}[container]
    r = randla.pca(data, 5, rng=0)
    L, R = r.factors()
    np.testing.assert_allclose(to_np(L @ R), X, atol=1e-10)
    assert randla.estimate_error(data, r, rng=0) < 1e-10 * np.linalg.norm(X, 2)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300)])
@pytest.mark.parametrize("n_components", [5, 0.9])
def test_estimator_signs_and_fit_transform_as_sklearns(shape, n_components):
    """Each axis has its largest entry positive on tall and on wide data, as
    scikit-learn's; fit_transform is the training data's transform (the
    randomized U diag(S) differs from it by the approximation's error)."""
    X = low_rank(*shape, rank=8, noise=0.01, rng=0) + 2.0
    ours = randla.PCA(n_components=n_components, random_state=0)
    Z = ours.fit_transform(X)
    exact = SklearnPCA(n_components=ours.n_components_, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.components_, exact.components_, atol=1e-6)
    np.testing.assert_allclose(Z, exact.transform(X), atol=1e-5 * np.abs(Z).max())
    np.testing.assert_allclose(Z, ours.transform(X), rtol=0, atol=1e-12 * np.abs(Z).max())


@pytest.mark.parametrize("estimator", [randla.PCA, randla.IncrementalPCA])
def test_estimator_fitted_in_double_transforms_single_precision_in_double(estimator):
    """As scikit-learn: the product of float32 rows with float64 axes is float64,
    not the axes rounded to float32."""
    X = data()
    model = estimator(n_components=4).fit(X)
    for method, rows in (("transform", X), ("inverse_transform", model.transform(X))):
        single = rows.astype(np.float32)
        expected = getattr(model, method)(single.astype(np.float64))  # the same numbers, in double
        got = getattr(model, method)(single)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_estimator_share_of_variance_needs_a_growing_basis():
    with pytest.raises(ValueError, match="float `n_components`.*block_krylov' takes an int"):
        randla.PCA(n_components=0.9, method="block_krylov").fit(data())


def tall(dtype=np.float64, offset=3.0):
    """Rows far more than features, where the covariance solver applies."""
    A = planted(4000, 40, decay="exponential", rate=0.8, dtype=np.float64, rng=1).A
    return (A + offset * (1 + np.arange(40) / 40)).astype(dtype)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_components", [5, 0.9, None])
def test_estimator_covariance_solver_is_exact(sparse, n_components):
    X = sparse_random(4000, 40, 8000, rng=1) if sparse else tall()
    exact = SklearnPCA(n_components=n_components, svd_solver="full").fit(X.toarray() if sparse else X)
    ours = randla.PCA(n_components=n_components, svd_solver="covariance_eigh")
    Z = ours.fit_transform(X)
    X = X.toarray() if sparse else X
    assert ours.n_components_ == exact.n_components_
    for name in ["explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(exact, name), rtol=1e-10, atol=1e-12)
    assert ours.noise_variance_ == pytest.approx(exact.noise_variance_, rel=1e-8, abs=1e-12)
    np.testing.assert_allclose(ours.components_, exact.components_, atol=1e-8)  # same sign convention
    np.testing.assert_allclose(Z, exact.transform(X), atol=1e-8)


def test_estimator_auto_solver_takes_the_covariance_of_tall_data_only():
    X, wide = tall(), data()
    assert X.shape[0] >= 10 * X.shape[1] and wide.shape[0] < 10 * wide.shape[1]
    auto = randla.PCA(4, random_state=0).fit(X)
    exact = randla.PCA(4, svd_solver="covariance_eigh").fit(X)
    np.testing.assert_array_equal(auto.components_, exact.components_)
    for other in (wide, sp.csr_array(X)):  # sparse data: scikit-learn's default is not exact either
        auto = randla.PCA(4, random_state=0).fit(other)
        randomized = randla.PCA(4, svd_solver="randomized", random_state=0).fit(other)
        np.testing.assert_array_equal(auto.components_, randomized.components_)


def test_estimator_covariance_solver_keeps_single_precision_far_from_zero():
    """The rows are centred in double before the Gram product, so an offset
    10^4 times the spread costs no accuracy (X^T X - m mean mean^T would
    lose about 8 of float32's 7 digits to cancellation)."""
    X = tall(np.float32, offset=3e4)
    exact = SklearnPCA(n_components=5, svd_solver="full").fit(X.astype(np.float64))
    ours = randla.PCA(n_components=5, svd_solver="covariance_eigh").fit(X)
    assert ours.components_.dtype == np.float32
    np.testing.assert_allclose(ours.explained_variance_, exact.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(ours.components_, exact.components_, atol=1e-5)


def test_estimator_bad_svd_solver_named_in_the_error():
    with pytest.raises(ValueError, match="`svd_solver` must be one of 'auto', 'randomized', 'covariance_eigh'.*'full'"):
        randla.PCA(3, svd_solver="full").fit(tall())


def test_estimator_covariance_solver_single_precision_noise_variance_and_score():
    """float32 data whose last 5 of 50 variances are 1e-8 times the largest, 45 axes kept (the default
    solver on tall data). The noise variance is summed from the double eigenvalues: the total less the 45
    leading variances rounded to float32 was 46% too high. The log-likelihood uses the float32 axes made
    orthonormal in double: as stored they leak ~1e-7 of the leading variances into the noise directions."""
    rng = np.random.default_rng(15)
    m, n, k = 600, 50, 45
    spread = np.r_[np.linspace(10, 1, k), np.full(n - k, 1e-3)]
    rotation = np.linalg.qr(rng.standard_normal((n, n)))[0]
    X = ((rng.standard_normal((m, n)) * spread) @ rotation + 1).astype(np.float32)
    Xd = X.astype(np.float64)  # the same values: the exact answer is LAPACK's on them
    variances, axes = np.linalg.eigh(np.cov(Xd, rowvar=False))
    variances, axes = variances[::-1], axes[:, ::-1]
    noise = variances[k:].mean()
    C = (axes[:, :k] * (variances[:k] - noise)) @ axes[:, :k].T + noise * np.eye(n)
    R = Xd - Xd.mean(axis=0)
    exact = -0.5 * (n * np.log(2 * np.pi) + np.linalg.slogdet(C)[1] + np.sum(R * np.linalg.solve(C, R.T).T, axis=1))
    ours = randla.PCA(n_components=k).fit(X)
    assert ours.components_.dtype == np.float32
    assert ours.noise_variance_ == pytest.approx(noise, rel=1e-6)  # measured 6e-9; was 0.46
    assert ours.score(X) == pytest.approx(exact.mean(), abs=1e-4)  # measured 1.5e-6 of -105.2; was 0.17
    np.testing.assert_allclose(ours.score_samples(X), exact, atol=1e-2)  # measured 1.3e-3; was 16 at worst


@pytest.mark.parametrize("params,match", [
    pytest.param(dict(method="bogus"), "`method` must be one of 'rsi', 'rsvd', 'block_krylov'; got 'bogus'",
                 id="method"),
    pytest.param(dict(power_iters=-4), "`power_iters` must be 'auto' or an int >= 0; got -4", id="power_iters"),
    pytest.param(dict(oversample=-3), "`oversample` must be an int >= 0; got -3", id="oversample"),
    pytest.param(dict(n_components=0.9, method="block_krylov"), "float `n_components`.*block_krylov' takes an int",
                 id="share-block_krylov"),
    pytest.param(dict(method="rsvd", power_iters=2), "method='rsvd' makes no power iterations; got power_iters=2",
                 id="rsvd-power_iters"),
    pytest.param(dict(whiten="no"), "`whiten` must be a bool.*got 'no'", id="whiten-str"),
    pytest.param(dict(whiten=None), "`whiten` must be a bool.*got None", id="whiten-None"),
])
@pytest.mark.parametrize("svd_solver", ["auto", "covariance_eigh"])
def test_estimator_checks_every_parameter_whichever_solver_runs(params, match, svd_solver):
    """Tall data, where the covariance solver uses none of the randomized settings: they are
    refused all the same, as on wide data, so a fit does not pass or fail by the data's shape."""
    X = tall()
    with pytest.raises(ValueError, match=match):
        randla.PCA(**{"n_components": 3, **params}, svd_solver=svd_solver).fit(X)


def test_estimator_whiten_takes_numpy_bools():
    X = tall()
    for flag in (np.True_, np.False_):
        np.testing.assert_array_equal(randla.PCA(3, whiten=flag).fit_transform(X),
                                      randla.PCA(3, whiten=bool(flag)).fit_transform(X))


def test_estimator_share_on_a_flat_spectrum_keeps_at_most_the_documented_excess():
    """The docstring's worst case for a float n_components: on a flat, noise-like spectrum up to about
    14% more components than the exact minimum (10% measured here); the share is always reached."""
    X = np.random.default_rng(1).standard_normal((300, 1000)) + 1  # wide: the randomized solver
    centred = np.linalg.svd(X - X.mean(axis=0), compute_uv=False) ** 2
    fewest = int(np.searchsorted(np.cumsum(centred) / centred.sum(), 0.5, side="right")) + 1
    ours = randla.PCA(n_components=0.5, random_state=0).fit(X)
    assert fewest <= ours.n_components_ <= 1.15 * fewest
    assert float(np.sum(ours.explained_variance_ratio_)) >= 0.5


def extreme_scale_data():
    """Tall rows (m >= 10 n: the covariance solver's shape) of rank 5 around a mean of 1."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 5)) @ rng.standard_normal((5, 12)) + 1.0


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e160])
@pytest.mark.parametrize("solver", ["covariance_eigh", "covariance_eigh sparse", "randomized"])
def test_estimator_scales_with_the_data_at_any_magnitude(solver, scale):
    """Singular values, axes and shares at 1e-200 ... 1e160 are those of numpy.linalg.svd on the
    unscaled data (the values scaled): the squares underflow to 0 below ~1e-160 and overflow above
    ~1e155, so neither the covariance nor the total variance is formed unscaled. Variances past the
    double range are inf (NumPy's overflow warning), never an OverflowError or NaN."""
    X = extreme_scale_data()
    m, n = X.shape
    mean, s, vh = exact_pca(X)
    Xs = sp.csr_array(X * scale) if solver.endswith("sparse") else X * scale
    with np.errstate(over="ignore"):  # the variances at 1e160 (~1e320): inf
        ours = randla.PCA(3, svd_solver=solver.split()[0], random_state=0).fit(Xs)
        variance = (s[:3] / np.sqrt(m - 1) * scale) ** 2
        noise = (np.sqrt(np.sum(s[3:] ** 2) / ((m - 1) * (n - 3))) * scale) ** 2
    np.testing.assert_allclose(ours.singular_values_ / scale, s[:3], rtol=1e-12)
    np.testing.assert_allclose(ours.explained_variance_ratio_, s[:3] ** 2 / np.sum(s**2), rtol=1e-12)
    assert sin_max_angle(ours.components_.T, vh[:3].T) < 1e-12
    np.testing.assert_allclose(ours.mean_ / scale, mean, rtol=1e-13)
    np.testing.assert_allclose(ours.explained_variance_, variance, rtol=1e-12)  # inf at 1e160, 0 at 1e-200
    assert ours.noise_variance_ == pytest.approx(noise, rel=1e-10)
    assert np.all(np.isfinite(ours.transform(Xs) / scale))


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e160])
def test_truncated_svd_shares_are_scale_free(scale):
    """TruncatedSVD's shares of the variance at any magnitude are those of the unscaled data,
    checked against numpy.linalg.svd: the total variance underflows to 0 near 1e-160 and its
    square overflows near 1e155, so the shares are taken of scaled scores."""
    X = extreme_scale_data()
    _, s, vh = np.linalg.svd(X, full_matrices=False)
    scores = X @ vh[:3].T
    share = np.var(scores, axis=0) / np.sum(np.var(X, axis=0))
    with np.errstate(over="ignore"):  # the variances at 1e160: inf
        ours = randla.TruncatedSVD(3, random_state=0).fit(X * scale)
        variance = (np.sqrt(np.var(scores, axis=0)) * scale) ** 2
    np.testing.assert_allclose(ours.singular_values_ / scale, s[:3], rtol=1e-12)
    np.testing.assert_allclose(ours.explained_variance_ratio_, share, rtol=1e-12)
    np.testing.assert_allclose(ours.explained_variance_, variance, rtol=1e-12)
    assert sin_max_angle(ours.components_.T, vh[:3].T) < 1e-12


@pytest.mark.parametrize("scale", [1e-150, 1e150, 1e160])
def test_total_variance_is_inf_past_the_double_range_not_an_overflow_error(scale):
    """||X_c||_F^2 / (m - 1) as a NumPy double: exact where representable, inf with NumPy's
    overflow warning beyond (~1e320 at 1e160), as explained_variance; never Python's OverflowError."""
    X = extreme_scale_data()
    _, s, _ = exact_pca(X)
    r = randla.pca(X * scale, 3, rng=0)
    np.testing.assert_allclose(r.explained_variance_ratio, s[:3] ** 2 / np.sum(s**2), rtol=1e-12)
    if scale > 1e155:
        with pytest.warns(RuntimeWarning, match="overflow"):
            assert r.total_variance == np.inf
    else:
        assert r.total_variance == pytest.approx(np.sum((s * scale) ** 2) / (X.shape[0] - 1), rel=1e-12)
