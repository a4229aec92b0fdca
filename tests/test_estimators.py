"""The scikit-learn estimators: sklearn's own conformance checks, and accuracy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge as ExactKernelRidge
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.pairwise import pairwise_kernels, rbf_kernel
from sklearn.utils.estimator_checks import parametrize_with_checks

import randla


@parametrize_with_checks(
    [
        randla.PCA(random_state=0),
        randla.PCA(n_components=2, whiten=True, random_state=0),
        randla.PCA(n_components=0.9, random_state=0),
        randla.IncrementalPCA(),
        randla.IncrementalPCA(n_components=2, whiten=True, batch_size=7),
        randla.TruncatedSVD(random_state=0),
        randla.TruncatedSVD(n_components=0.9, random_state=0),
        randla.Nystroem(n_components=10, random_state=0),
        randla.Nystroem(kernel="chi2", n_components=10, random_state=0),
        randla.Nystroem(kernel="cosine", n_components=10, random_state=0),
        randla.KernelRidge(alpha=0.1, n_components=20, random_state=0),
        randla.KernelRidge(kernel="laplacian", alpha=0.1, n_components=20, random_state=0),
        randla.KernelRidge(alpha=0.1, solver="pcg", n_components=None, random_state=0),
        randla.SpectralClustering(n_clusters=3, n_landmarks=30, random_state=0),
    ]
)
@pytest.mark.filterwarnings("ignore:n_components=.*n_samples:UserWarning")
@pytest.mark.filterwarnings("ignore:n_landmarks=.*n_components:UserWarning")
def test_sklearn_conventions(estimator, check):
    check(estimator)


def test_nystroem_features_reproduce_the_landmark_factor():
    X = randla.testing.clustered(600, 3, 8, rng=0).X
    est = randla.Nystroem(gamma=0.5, n_components=40, random_state=0).fit(X)
    Z = est.transform(X)
    K = rbf_kernel(X, gamma=0.5)
    chosen = randla.landmarks(randla.kernel_operator(X, gamma=0.5), 40, rng=np.random.default_rng(0))
    assert np.allclose(Z @ Z.T, chosen.reconstruct(), atol=1e-8)
    # Z Z^T is the column Nystrom approximation: PSD error, trace error as reported.
    assert np.trace(K - Z @ Z.T) == pytest.approx(est.trace_error_, rel=1e-6)
    assert np.linalg.eigvalsh(K - Z @ Z.T)[0] > -1e-8
    # New points: z(x)^T z(y) equals the Nystrom kernel C(x) W^+ C(y)^T.
    Xn = X[:50] + 0.01
    Cn = rbf_kernel(Xn, est.components_, gamma=0.5)
    W = rbf_kernel(est.components_, gamma=0.5)
    Zn = est.transform(Xn)
    assert np.allclose(Zn @ Zn.T, Cn @ np.linalg.pinv(W, rcond=1e-12, hermitian=True) @ Cn.T, atol=1e-6)


@pytest.mark.parametrize("landmarks", ["rpcholesky", "uniform"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nystroem_fit_transform_is_the_factor_transform_gives(landmarks, dtype):
    X = randla.testing.clustered(600, 3, 8, rng=0).X.astype(dtype)
    est = randla.Nystroem(gamma=0.5, n_components=40, landmarks=landmarks, random_state=0)
    Z = est.fit_transform(X)
    assert Z.dtype == dtype and Z.shape == (600, len(est.component_indices_))
    again = randla.Nystroem(gamma=0.5, n_components=40, landmarks=landmarks, random_state=0).fit(X)
    np.testing.assert_array_equal(again.component_indices_, est.component_indices_)
    # Equal to rounding, amplified by the conditioning of T = F[S]^-1 that transform applies.
    bound = 100 * np.linalg.cond(est.normalization_.astype(np.float64)) * np.finfo(dtype).eps
    np.testing.assert_allclose(Z, est.transform(X), rtol=0, atol=bound)


def test_nystroem_normalization_maps_as_sklearns():
    """z(x) = k(x, components_) @ normalization_.T, scikit-learn's formula; in
    double for single-precision rows given to a model fitted in double."""
    X = randla.testing.clustered(300, 3, 5, rng=0).X
    est = randla.Nystroem(gamma=0.5, n_components=30, random_state=0).fit(X)
    Xn = (X[:40] + 0.01).astype(np.float32)
    Z = est.transform(Xn)
    assert Z.dtype == np.float64
    expected = rbf_kernel(Xn.astype(np.float64), est.components_, gamma=0.5) @ est.normalization_.T
    np.testing.assert_allclose(Z, expected, rtol=0, atol=1e-12)


def test_kernel_parameters_that_do_not_apply():
    """As scikit-learn's Nystroem: 'linear' ignores gamma, a callable refuses
    it; 'matern' (not a kernel of scikit-learn's) refuses it too."""
    X = randla.testing.clustered(200, 3, 4, rng=0).X
    plain = randla.Nystroem(kernel="linear", n_components=3, random_state=0).fit_transform(X)
    with_gamma = randla.Nystroem(kernel="linear", gamma=5.0, n_components=3, random_state=0).fit_transform(X)
    np.testing.assert_array_equal(with_gamma, plain)
    for estimator in (randla.Nystroem, randla.KernelRidge):
        for kernel, match in ((lambda A, B: A @ B.T, "callable"), ("matern", "'matern'")):
            with pytest.raises(ValueError, match=f"`gamma` does not apply to .*{match}"):
                model = estimator(kernel=kernel, gamma=0.1)
                model.fit(X, X[:, 0]) if estimator is randla.KernelRidge else model.fit(X)
    poly = randla.Nystroem(kernel="poly", degree=2, n_components=20, random_state=0).fit_transform(X)
    polynomial = randla.Nystroem(kernel="polynomial", degree=2, n_components=20, random_state=0).fit_transform(X)
    np.testing.assert_array_equal(poly, polynomial)


def test_nystroem_landmarks_beat_uniform_sampling_on_clustered_data():
    from sklearn.kernel_approximation import Nystroem as SklearnNystroem

    errors = {"randla": [], "sklearn": []}
    for seed in range(3):
        X = randla.testing.clustered(1000, 2, 20, rng=seed).X
        K = rbf_kernel(X, gamma=0.5)
        for name, est in [
            ("randla", randla.Nystroem(gamma=0.5, n_components=60, random_state=seed)),
            ("sklearn", SklearnNystroem(gamma=0.5, n_components=60, random_state=seed)),
        ]:
            Z = est.fit_transform(X)
            errors[name].append(np.trace(K - Z @ Z.T))
    assert np.mean(errors["sklearn"]) > 2 * np.mean(errors["randla"])


def test_nystroem_uniform_landmarks_past_the_numerical_rank():
    # 300 uniform landmarks for a kernel of numerical rank about 210: an
    # unshifted factor gives ||K - Z Z^T|| = 1.4e-3 ||K|| and a negative
    # tr(K - Z Z^T) reported as 0. Measured: 1.7e-8 ||K||; scikit-learn's
    # Nystroem, which clips W's eigenvalues at 1e-12, 1.1e-4.
    from sklearn.kernel_approximation import Nystroem as SklearnNystroem

    X = np.random.default_rng(0).standard_normal((1000, 2))
    K = rbf_kernel(X, gamma=0.5)
    est = randla.Nystroem(gamma=0.5, n_components=300, landmarks="uniform", random_state=0).fit(X)
    Z = est.transform(X)
    Zs = SklearnNystroem(gamma=0.5, n_components=300, random_state=0).fit_transform(X)
    assert np.linalg.norm(K - Z @ Z.T) <= 1e-2 * np.linalg.norm(K - Zs @ Zs.T)
    assert np.trace(K - Z @ Z.T) == pytest.approx(est.trace_error_, abs=1e-12 * np.trace(K))


def test_nystroem_of_a_kernel_that_is_zero_on_the_data():
    # No landmark adds a feature: transform gives an empty block, not an error.
    X = np.zeros((6, 2))
    est = randla.Nystroem(kernel="linear", n_components=3, random_state=0).fit(X)
    assert len(est.component_indices_) == 0 and est.trace_error_ == 0.0
    Z = est.transform(np.ones((4, 2)))
    assert Z.shape == (4, 0) and Z.dtype == np.float64


@pytest.mark.parametrize(
    "estimator, match",
    [
        (randla.Nystroem(n_components="auto"), "an int >= 1; got 'auto'"),
        (randla.Nystroem(n_components=0), "an int >= 1; got 0"),
        (randla.KernelRidge(n_components="all"), "an int >= 1, 'auto' or None; got 'all'"),
        (randla.KernelRidge(n_components=2.5), "an int >= 1, 'auto' or None; got 2.5"),
        (randla.SpectralClustering(n_components="x"), "an int >= 1; got 'x'"),
        (randla.SpectralClustering(n_landmarks=0), "an int >= 1; got 0"),
    ],
)
def test_bad_n_components_named_in_the_error(estimator, match):
    X, y = randla.testing.kernel_regression(50, d=2, rng=0)
    name = "n_landmarks" if getattr(estimator, "n_landmarks", None) == 0 else "n_components"
    with pytest.raises(ValueError, match=f"`{name}` must be {match}"):
        estimator.fit(X, y)


def test_spectral_clustering_takes_at_least_one_landmark_per_cluster():
    X = randla.testing.clustered(300, 2, 4, rng=0).X
    with pytest.warns(UserWarning, match="n_landmarks=2 < n_components=4: using 4 landmarks"):
        est = randla.SpectralClustering(4, n_landmarks=2, random_state=0).fit(X)
    assert est.embedding_.shape == (300, 4)
    with pytest.warns(UserWarning, match="n_landmarks=5 < n_components=8: using 8 landmarks"):
        est = randla.SpectralClustering(4, n_components=8, n_landmarks=5, random_state=0).fit(X)
    assert est.embedding_.shape == (300, 8)


@pytest.mark.parametrize("solver,n_components", [("nystrom", 600), ("pcg", 600), ("pcg", None)])
def test_kernel_ridge_matches_exact_kernel_ridge(solver, n_components):
    X, y = randla.testing.kernel_regression(1500, d=4, noise=0.1, rng=0)
    Xt, _ = randla.testing.kernel_regression(300, d=4, noise=0.1, rng=1)
    exact = ExactKernelRidge(alpha=0.3, kernel="rbf", gamma=0.2).fit(X, y).predict(Xt)
    model = randla.KernelRidge(alpha=0.3, gamma=0.2, n_components=n_components, solver=solver,
                               tol=1e-10, max_iter=500, random_state=0).fit(X, y)
    pred = model.predict(Xt)
    assert model.converged_
    assert np.linalg.norm(pred - exact) <= 5e-3 * np.linalg.norm(exact)


@pytest.mark.parametrize("kernel,gamma", [("chi2", 0.3), ("cosine", None)])
def test_chi2_and_cosine_kernels_match_sklearn(kernel, gamma):
    # Non-negative features (chi2's domain), as histograms and TF-IDF rows are.
    X, y = randla.testing.kernel_regression(800, d=4, noise=0.1, rng=0)
    Xt, _ = randla.testing.kernel_regression(200, d=4, rng=1)
    X, Xt = np.abs(X), np.abs(Xt)
    exact = ExactKernelRidge(alpha=0.1, kernel=kernel, gamma=gamma).fit(X, y).predict(Xt)
    for solver, m in (("nystrom", 800), ("pcg", None)):
        model = randla.KernelRidge(kernel=kernel, gamma=gamma, alpha=0.1, n_components=m, solver=solver,
                                   tol=1e-10, max_iter=1000, random_state=0).fit(X, y)
        assert np.linalg.norm(model.predict(Xt) - exact) <= 1e-6 * np.linalg.norm(exact)
    # Nystroem features: landmarks by RPCholesky reproduce the kernel on the training points.
    est = randla.Nystroem(kernel=kernel, gamma=gamma, n_components=200, random_state=0).fit(X)
    K = pairwise_kernels(X, metric=kernel, **({} if gamma is None else {"gamma": gamma}))
    Z = est.transform(X)
    assert np.trace(K - Z @ Z.T) == pytest.approx(est.trace_error_, abs=1e-10 * np.trace(K))
    assert np.linalg.norm(K - Z @ Z.T, 2) <= 1e-2 * np.linalg.norm(K, 2)


def test_kernel_estimators_take_sparse_points_as_scikit_learns():
    import scipy.sparse as sp

    X = sp.random_array((500, 300), density=0.03, format="csr", rng=0)
    y = np.asarray(X[:, :30].sum(axis=1)).ravel()
    Xt = sp.random_array((40, 300), density=0.03, format="csr", rng=1)
    exact = ExactKernelRidge(alpha=0.1, kernel="cosine").fit(X, y).predict(Xt)
    for solver, m in (("nystrom", 500), ("pcg", None)):
        model = randla.KernelRidge(kernel="cosine", alpha=0.1, n_components=m, solver=solver, tol=1e-10,
                                   random_state=0).fit(X, y)
        assert np.linalg.norm(model.predict(Xt) - exact) <= 1e-6 * np.linalg.norm(exact)
    est = randla.Nystroem(kernel="cosine", n_components=100, random_state=0).fit(X)
    assert sp.issparse(est.components_)
    np.testing.assert_allclose(est.transform(Xt), est.transform(Xt.toarray()), rtol=1e-10, atol=1e-12)
    K = pairwise_kernels(X, metric="cosine")
    Z = est.transform(X)
    assert np.trace(K - Z @ Z.T) == pytest.approx(est.trace_error_, abs=1e-10 * np.trace(K))
    blobs = randla.testing.clustered(300, 5, 3, rng=0).X
    dense = randla.SpectralClustering(3, n_landmarks=60, random_state=0).fit(blobs).labels_
    sparse = randla.SpectralClustering(3, n_landmarks=60, random_state=0).fit(sp.csr_array(blobs)).labels_
    assert adjusted_rand_score(dense, sparse) == 1.0


@pytest.mark.parametrize("solver,n_components", [("nystrom", 1500), ("pcg", None)])
def test_kernel_ridge_sample_weight_matches_exact(solver, n_components):
    X, y = randla.testing.kernel_regression(1500, d=4, noise=0.1, rng=0)
    Xt, _ = randla.testing.kernel_regression(300, d=4, noise=0.1, rng=1)
    w = np.random.default_rng(2).exponential(size=1500)
    w[::7] = 0
    exact = ExactKernelRidge(alpha=0.3, kernel="rbf", gamma=0.2).fit(X, y, sample_weight=w).predict(Xt)
    # Capped at the points of positive weight, with a warning naming them.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = randla.KernelRidge(alpha=0.3, gamma=0.2, n_components=n_components, solver=solver,
                                   tol=1e-10, max_iter=500, random_state=0).fit(X, y, sample_weight=w)
    if n_components is not None:
        assert "n_samples=1285 of positive weight" in str(caught[0].message)
        assert np.all(w[model.result_.indices] > 0)
    assert np.linalg.norm(model.predict(Xt) - exact) <= 1e-6 * np.linalg.norm(exact)
    # A single number weighs every sample alike: the unweighted fit with alpha / weight.
    same = randla.KernelRidge(alpha=0.3, gamma=0.2, n_components=n_components, solver=solver, tol=1e-10,
                              max_iter=500, random_state=0).fit(X, y, sample_weight=2.0).predict(Xt)
    halved = ExactKernelRidge(alpha=0.15, kernel="rbf", gamma=0.2).fit(X, y).predict(Xt)
    assert np.linalg.norm(same - halved) <= 1e-6 * np.linalg.norm(halved)


def test_kernel_ridge_alpha_per_target_matches_exact():
    X, y = randla.testing.kernel_regression(1000, d=4, noise=0.1, rng=0)
    Y = np.column_stack([y, np.sin(X[:, 1]), -y])
    alpha = np.array([0.3, 0.01, 3.0])
    Xt, _ = randla.testing.kernel_regression(300, d=4, rng=1)
    exact = ExactKernelRidge(alpha=alpha, kernel="rbf", gamma=0.2).fit(X, Y).predict(Xt)
    for solver, m in (("nystrom", 1000), ("pcg", None)):
        model = randla.KernelRidge(alpha=alpha, gamma=0.2, n_components=m, solver=solver, tol=1e-10,
                                   max_iter=1000, random_state=0).fit(X, Y)
        assert np.linalg.norm(model.predict(Xt) - exact, axis=0).max() <= 1e-6 * np.linalg.norm(exact)


def test_kernel_ridge_multi_output_and_float32():
    X, y = randla.testing.kernel_regression(800, d=3, rng=0)
    Y = np.column_stack([y, -2 * y])
    model = randla.KernelRidge(alpha=0.1, n_components=200, random_state=0).fit(X.astype(np.float32), Y)
    pred = model.predict(X.astype(np.float32))
    assert pred.shape == (800, 2) and pred.dtype == np.float32
    assert np.allclose(pred[:, 1], -2 * pred[:, 0], rtol=1e-4, atol=1e-4)


def test_kernel_ridge_warns_when_cg_stops_short_and_takes_a_preconditioner_rank():
    X, y = randla.testing.kernel_regression(1500, d=3, rng=0)
    params = dict(alpha=1e-4, gamma=0.5, solver="pcg", n_components=None, random_state=0)
    # The default rank (100) is far below this small alpha's effective dimension: 200 steps reach only ~2e-3.
    with pytest.warns(ConvergenceWarning, match="preconditioner_rank"):
        short = randla.KernelRidge(**params, max_iter=20).fit(X, y)
    assert not short.converged_ and short.n_iter_ == 20
    exact = ExactKernelRidge(alpha=1e-4, kernel="rbf", gamma=0.5).fit(X, y).predict(X[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = randla.KernelRidge(**params, preconditioner_rank=600).fit(X, y)
    assert model.converged_ and model.n_iter_ <= 20
    np.testing.assert_allclose(model.predict(X[:200]), exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_kernel_ridge_gives_the_gaussian_process_posterior_of_a_direct_fit():
    X, y = randla.testing.kernel_regression(600, d=3, rng=1)
    model = randla.KernelRidge(alpha=0.1, gamma=0.5, n_components=150, random_state=0).fit(X, y)
    mean, std = model.predict(X[:50], return_std=True)
    expected = model.result_.predict(X[:50], return_std=True)
    np.testing.assert_array_equal(mean, expected[0])
    np.testing.assert_array_equal(std, expected[1])
    np.testing.assert_array_equal(mean, model.predict(X[:50]))
    assert model.log_marginal_likelihood_value_ == model.result_.log_marginal_likelihood
    assert np.isfinite(model.log_marginal_likelihood_value_)
    pcg = randla.KernelRidge(alpha=0.1, gamma=0.5, solver="pcg", n_components=None, random_state=0).fit(X, y)
    assert pcg.log_marginal_likelihood_value_ is None
    with pytest.raises(ValueError, match="return_std=True needs"):
        pcg.predict(X[:5], return_std=True)


def test_kernel_ridge_rejects_full_system_without_pcg():
    X, y = randla.testing.kernel_regression(50, d=2, rng=0)
    with pytest.raises(ValueError, match="pcg"):
        randla.KernelRidge(n_components=None).fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        randla.KernelRidge(solver="cholesky").fit(X, y)


def test_spectral_clustering_finds_planted_clusters():
    data = randla.testing.clustered(1200, 3, 5, imbalance=4.0, rng=0)
    labels = randla.SpectralClustering(5, gamma=1.0, n_landmarks=100, random_state=0).fit_predict(data.X)
    assert adjusted_rand_score(data.labels, labels) > 0.99


def test_recommend_suggests_only_a_fix_that_helps():
    # With exclude_seen=False already, the message told the user to pass it.
    data = randla.testing.ratings(30, 20, 200, rank=2, noise=0.1, rng=0)
    model = randla.MatrixCompletion(rank=2, reg=1.0, random_state=0).fit(*data, shape=data.shape)
    with pytest.raises(ValueError, match=r"exceeds the 20 candidate columns of user 0") as info:
        model.recommend(0, k=21, exclude_seen=False)
    assert "exclude_seen" not in str(info.value)
    with pytest.raises(ValueError, match=r"or pass exclude_seen=False"):
        model.recommend(0, k=20)


def test_scikit_learns_copy_is_accepted_and_x_never_changed():
    X = randla.testing.low_rank(400, 30, rank=5, noise=0.01, rng=0)
    before = X.copy()
    for make in (lambda copy: randla.PCA(5, copy=copy, random_state=0),
                 lambda copy: randla.IncrementalPCA(5, copy=copy, batch_size=200)):
        Z = make(False).fit_transform(X)
        assert np.array_equal(X, before)
        np.testing.assert_array_equal(Z, make(True).fit_transform(X))


@pytest.mark.parametrize(
    "make",
    [
        lambda: randla.PCA(3, svd_solver="randomized", random_state=0),
        lambda: randla.PCA(3, random_state=0),  # "auto": the covariance solver on these tall data
        lambda: randla.IncrementalPCA(3, batch_size=100),
        lambda: randla.TruncatedSVD(3, random_state=0),
    ],
    ids=["PCA-randomized", "PCA-auto", "IncrementalPCA", "TruncatedSVD"],
)
def test_dask_input_warns_that_it_is_read_into_memory(make):
    """scikit-learn's validation computes a Dask array whole into NumPy: it was
    done silently, though randla.pca keeps the same data out of core."""
    import dask.array as da

    X = randla.testing.low_rank(400, 30, rank=5, noise=0.01, rng=0) + 3.0
    D = da.from_array(X, chunks=(100, 30))
    said = r"reads the whole Dask array X into memory.*randla\.pca.*randla\.StreamingPCA\(\.\.\.\)\.fit\(X\)"
    expected = make().fit(X)
    with pytest.warns(UserWarning, match=said):
        estimator = make().fit(D)
    with pytest.warns(UserWarning, match=said):
        Z = estimator.transform(D)
    assert isinstance(Z, np.ndarray)
    # The same NumPy array reaches the same computation: identical results.
    np.testing.assert_array_equal(estimator.components_, expected.components_)
    np.testing.assert_array_equal(estimator.singular_values_, expected.singular_values_)
    np.testing.assert_array_equal(Z, expected.transform(X))
    with pytest.warns(UserWarning, match=said):
        np.testing.assert_array_equal(make().fit_transform(D), make().fit_transform(X))
    if isinstance(estimator, randla.IncrementalPCA):
        with pytest.warns(UserWarning, match=said):
            partial = make().partial_fit(D)
        np.testing.assert_array_equal(partial.components_, make().partial_fit(X).components_)
    if isinstance(estimator, randla.PCA):
        with pytest.warns(UserWarning, match=said):
            assert estimator.score(D) == expected.score(X)


@pytest.mark.parametrize("check_input", [True, False])
def test_incremental_pca_partial_fit_takes_check_input(check_input):
    """scikit-learn's partial_fit(X, y=None, check_input=True): passing it raised a TypeError."""
    X = np.random.default_rng(0).standard_normal((400, 10))
    given, default = randla.IncrementalPCA(3), randla.IncrementalPCA(3)
    for batch in np.array_split(X, 4):
        given.partial_fit(batch, check_input=check_input)
        default.partial_fit(batch)
    np.testing.assert_array_equal(given.components_, default.components_)
    np.testing.assert_allclose(given.mean_, X.mean(axis=0), atol=1e-12)


def _fitted_arrays(name, random_state):
    """What a fit with this random_state learnt, for the estimators that take one."""
    X = randla.testing.low_rank(300, 40, rank=10, noise=0.3, rng=0)
    y = X[:, 0] + X[:, 1] ** 2
    if name == "PCA":  # the randomized solver: a full fit would use no randomness
        return randla.PCA(5, svd_solver="randomized", random_state=random_state).fit(X).components_
    if name == "TruncatedSVD":
        return randla.TruncatedSVD(5, random_state=random_state).fit(X).components_
    if name == "Nystroem":
        model = randla.Nystroem(n_components=20, landmarks="uniform", random_state=random_state)
        return model.fit(X).component_indices_
    if name == "RandomFourierFeatures":
        return randla.RandomFourierFeatures(n_components=20, random_state=random_state).fit(X).transform(X[:3])
    if name == "KernelRidge":
        return randla.KernelRidge(alpha=0.1, n_components=20, landmarks="uniform",
                                  random_state=random_state).fit(X, y).dual_coef_
    if name == "SpectralClustering":
        return randla.SpectralClustering(3, n_landmarks=30, landmarks="uniform",
                                         random_state=random_state).fit(X).embedding_
    data = randla.testing.ratings(60, 40, 1200, rank=3, noise=0.1, rng=0)
    return randla.MatrixCompletion(rank=3, reg=1.0, random_state=random_state).fit(*data, shape=data.shape).result_.U


ESTIMATORS_WITH_RANDOM_STATE = ("PCA", "TruncatedSVD", "Nystroem", "RandomFourierFeatures", "KernelRidge",
                                "SpectralClustering", "MatrixCompletion")


@pytest.mark.parametrize("name", ESTIMATORS_WITH_RANDOM_STATE)
def test_random_state_none_draws_from_numpys_global_state_as_scikit_learn(name):
    """random_state=None took fresh OS entropy, so np.random.seed(0) at the top of a script did not make
    fits reproducible, as it does for scikit-learn's estimators (check_random_state(None))."""
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        first = _fitted_arrays(name, None)
        np.random.seed(0)
        again = _fitted_arrays(name, None)
        np.random.seed(1)
        other = _fitted_arrays(name, None)
    finally:
        np.random.set_state(saved)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_state_int_and_random_state_instance_keep_their_streams():
    from randla.estimators._common import _random_seed

    # An int seeds the Generator itself, a RandomState gives one draw as the seed: as before None changed.
    assert _random_seed(7).integers(2**62) == np.random.default_rng(7).integers(2**62)
    seed = np.random.RandomState(3).randint(2**31 - 1)
    assert _random_seed(np.random.RandomState(3)).integers(2**62) == np.random.default_rng(seed).integers(2**62)
    generator = np.random.default_rng(0)
    assert _random_seed(generator) is generator
    saved = np.random.get_state()
    try:
        np.random.seed(5)
        _random_seed(4)  # an int leaves the global state alone
        after_int = np.random.randint(2**31 - 1)
        np.random.seed(5)
        assert after_int == np.random.randint(2**31 - 1)
    finally:
        np.random.set_state(saved)


@pytest.mark.parametrize("graph", ["nearest_neighbors", "precomputed"])
def test_spectral_clustering_refit_with_a_kernel_affinity_drops_the_old_graph(graph):
    """A kernel-affinity refit kept affinity_matrix_ of the earlier graph fit: another data set's graph."""
    rng = np.random.default_rng(0)
    X1, X2 = rng.standard_normal((200, 3)), rng.standard_normal((500, 3))
    model = randla.SpectralClustering(3, affinity=graph, n_landmarks=30, random_state=0)
    model.fit(rbf_kernel(X1) if graph == "precomputed" else X1)
    assert model.affinity_matrix_.shape == (200, 200)
    model.set_params(affinity="rbf").fit(X2)
    assert model.labels_.shape == (500,)
    assert not hasattr(model, "affinity_matrix_")


def test_estimators_without_scikit_learn_name_the_extra(monkeypatch):
    import sys

    import randla

    for name in {"sklearn", *(m for m in sys.modules if m.startswith("sklearn."))}:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    for name in [m for m in sys.modules if m.startswith("randla.estimators")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(randla, "estimators", raising=False)
    with pytest.raises(ImportError, match=r"randla\.PCA needs scikit-learn: pip install 'randla\[sklearn\]'"):
        randla.PCA
    with pytest.raises(ImportError, match=r"randla\.KernelRidge needs scikit-learn"):
        __import__("randla", fromlist=["KernelRidge"])  # from randla import KernelRidge
