"""randla.Nystroem as a scikit-learn transformer: output feature names and set_output; the kernel
estimators' parameter checks and KernelRidge's posterior shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF
from sklearn.kernel_approximation import Nystroem as SklearnNystroem
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import randla


def frame():
    return pd.DataFrame(np.random.default_rng(0).standard_normal((100, 3)), columns=["a", "b", "c"])


def test_feature_names_are_sklearns():
    X = frame()
    ours = randla.Nystroem(n_components=5, random_state=0).fit(X)
    theirs = SklearnNystroem(n_components=5, random_state=0).fit(X)
    names = ours.get_feature_names_out()
    np.testing.assert_array_equal(names, theirs.get_feature_names_out())
    np.testing.assert_array_equal(names, [f"nystroem{i}" for i in range(5)])
    np.testing.assert_array_equal(ours.get_feature_names_out(["a", "b", "c"]), names)


def test_pipeline_set_output_pandas():
    X = frame()
    pipe = make_pipeline(StandardScaler(), randla.Nystroem(n_components=5, random_state=0))
    plain = pipe.fit_transform(X)
    Z = pipe.set_output(transform="pandas").fit_transform(X)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"nystroem{i}" for i in range(5)]
    assert Z.index.equals(X.index)
    np.testing.assert_allclose(Z.to_numpy(), plain, rtol=1e-12, atol=1e-12)


def test_names_follow_the_landmarks_kept():
    # Three distinct points: at most three landmarks, so three output columns.
    X = np.repeat(np.random.default_rng(1).standard_normal((3, 2)), 10, axis=0)
    est = randla.Nystroem(n_components=8, random_state=0).fit(X)
    names = est.get_feature_names_out()
    assert len(names) == est.transform(X).shape[1] == len(est.component_indices_) == 3


def regression(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, np.sin(X[:, 0]) + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("estimator", [randla.Nystroem(n_components=10, landmarks="rp-cholesky"),
                                       randla.SpectralClustering(3, landmarks="rp-cholesky"),
                                       randla.KernelRidge(landmarks="rp-cholesky")])
def test_a_bad_landmarks_is_named_landmarks(estimator):
    # Nystroem and SpectralClustering used to report it as `method`, randla.landmarks' name for it.
    X, y = regression(60)
    with pytest.raises(ValueError, match=r"^`landmarks` must be one of 'rpcholesky', .*; got 'rp-cholesky'\.$"):
        estimator.fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [({"landmarks": "rp-cholesky"}, "`landmarks` must be one of"),
     ({"landmarks": [0, 0, 1]}, "landmark indices must be distinct"),
     ({"landmarks": [0, 60]}, r"landmark indices must lie in \[0, 59\]"),
     ({"tol": -1.0}, r"`tol` must be a float in \(0, 1\)"),
     ({"tol": 1.0}, r"`tol` must be a float in \(0, 1\)"),
     ({"max_iter": 0}, "`max_iter` must be an int >= 1; got 0"),
     ({"preconditioner_rank": 0}, "`preconditioner_rank` must be 'auto' or an int >= 1 .*; got 0"),
     ({"preconditioner_rank": 2.5}, "`preconditioner_rank` must be 'auto' or an int >= 1 .*; got 2.5"),
     ({"preconditioner_rank": True}, "`preconditioner_rank` must be 'auto' or an int >= 1 .*; got True"),
     ({"preconditioner_rank": "full"}, "`preconditioner_rank` must be 'auto' or an int >= 1 .*; got 'full'")],
)
@pytest.mark.parametrize("path", [{}, {"n_components": 10}, {"solver": "pcg", "n_components": None}])
def test_kernel_ridge_checks_its_parameters_on_every_path(params, match, path):
    # The exact path of n_components="auto" (n <= 2000) uses none of them, and used to accept them,
    # so that the same estimator failed only once refitted on more than 2000 samples.
    X, y = regression(60)
    with pytest.raises(ValueError, match=match):
        randla.KernelRidge(**params, **path).fit(X, y)
    valid = {"landmarks": "uniform", "tol": 1e-3, "max_iter": 100, "preconditioner_rank": 7}
    assert randla.KernelRidge(**valid, **path, random_state=0).fit(X, y).converged_


def test_kernel_ridge_caps_the_preconditioner_rank_at_the_samples():
    # A rank set for the whole data must serve a smaller fold: rank n is exact, as n_components is capped.
    X, y = regression(60)
    params = {"alpha": 0.1, "gamma": 0.5, "solver": "pcg", "n_components": None, "tol": 1e-10, "random_state": 0}
    with pytest.warns(UserWarning, match=r"^preconditioner_rank=100 > n_samples=60: using rank 60"):
        model = randla.KernelRidge(**params, preconditioner_rank=100).fit(X, y)
    at_n = randla.KernelRidge(**params, preconditioner_rank=60).fit(X, y)
    np.testing.assert_array_equal(model.dual_coef_, at_n.dual_coef_)
    K = np.exp(-0.5 * cdist(X, X, "sqeuclidean"))
    exact = scipy.linalg.solve(K + 0.1 * np.eye(60), y, assume_a="pos")
    assert model.converged_ and model.n_iter_ <= 5
    assert np.linalg.norm(model.dual_coef_ - exact) <= 1e-8 * np.linalg.norm(exact)


@pytest.mark.parametrize("n_components", ["auto", 80])
def test_kernel_ridge_std_has_a_column_per_target_as_scikit_learns(n_components):
    # 80 landmarks of 80 points: the Nystrom path's posterior, exact too.
    X, y = regression(80)
    Y = np.column_stack([y, np.cos(X[:, 1])])
    Xt = regression(9, seed=1)[0]
    gp = GaussianProcessRegressor(RBF(1.0), alpha=0.1, optimizer=None).fit(X, Y)
    gp_mean, gp_std = gp.predict(Xt, return_std=True)
    model = randla.KernelRidge(alpha=0.1, gamma=0.5, n_components=n_components, random_state=0).fit(X, Y)
    mean, std = model.predict(Xt, return_std=True)
    assert mean.shape == std.shape == gp_std.shape == (9, 2)
    np.testing.assert_allclose(mean, gp_mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(std, gp_std, rtol=0, atol=1e-8)
    assert model.predict(Xt, return_std=True)[1].shape == (9, 2)
    one = randla.KernelRidge(alpha=0.1, gamma=0.5, n_components=n_components, random_state=0).fit(X, y)
    assert one.predict(Xt, return_std=True)[1].shape == (9,)
