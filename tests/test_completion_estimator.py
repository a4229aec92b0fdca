"""The MatrixCompletion estimator: a shell over randla.complete with predictions and recommendations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import randla
from randla.testing import ratings


def _noiseless(rank=3, rng=0):
    """A 300 x 200 rank-``rank`` matrix with 40% of its entries observed; 20% of those held out."""
    data = ratings(300, 200, 24000, rank, noise=0.0, row_activity=0, col_activity=0, decay=0, rng=rng)
    return data.split(0.2, rng=1)


def _relative_error(model, test):
    truth = test.truth(test.rows, test.cols)
    return np.linalg.norm(model.predict(test.rows, test.cols) - truth) / np.linalg.norm(truth)


@pytest.fixture(scope="module")
def recovered():
    """An exact recovery of a noiseless rank-3 matrix, and its training entries."""
    train, _ = _noiseless()
    model = randla.MatrixCompletion(3, method="altmin", reg=1e-6, center=False, tol=1e-8, max_iter=300,
                                    random_state=0)
    return model.fit(*train, shape=train.shape), train


@pytest.mark.parametrize("method", ["softimpute_als", "softimpute", "altmin"])
def test_recovers_a_noiseless_low_rank_matrix(method):
    train, test = _noiseless()
    model = randla.MatrixCompletion(3, method=method, reg=1e-6, center=False, tol=1e-8, max_iter=300, random_state=0)
    assert model.fit(*train, shape=train.shape) is model
    assert _relative_error(model, test) < 1e-4
    assert model.converged_ and 1 <= model.n_iter_ <= 300
    assert model.shape_ == (300, 200) and model.reg_ == 1e-6
    assert model.U_.shape == (300, 3) and model.S_.shape == (3,) and model.Vh_.shape == (3, 200)
    U, S, Vh = model.result_
    assert model.U_ is U and model.S_ is S and model.Vh_ is Vh


def test_keeps_the_observed_pattern_sparse(recovered):
    model, train = recovered
    assert sp.issparse(model.seen_) and model.seen_.format == "csr" and model.seen_.dtype == np.int8
    assert model.seen_.shape == (300, 200) and model.seen_.nnz == train.rows.size
    assert np.all(model.seen_[train.rows, train.cols] == 1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter caps for speed
@pytest.mark.parametrize("container", [sp.coo_matrix, sp.csr_matrix, sp.csr_array])
def test_sparse_input_fits_like_index_arrays(container):
    data = ratings(300, 200, 6000, 3, noise=0.1, rng=2)
    params = dict(rank=3, reg=1.0, max_iter=20, random_state=0)
    from_arrays = randla.MatrixCompletion(**params).fit(*data, shape=data.shape)
    matrix = container(sp.coo_matrix((data.values, (data.rows, data.cols)), shape=data.shape))
    from_matrix = randla.MatrixCompletion(**params).fit(matrix)
    rows, cols = np.divmod(np.arange(0, 60000, 7), 200)
    np.testing.assert_allclose(from_matrix.predict(rows, cols), from_arrays.predict(rows, cols), rtol=1e-12)
    assert (from_matrix.seen_ != from_arrays.seen_).nnz == 0


def test_recommends_the_true_top_items_among_unseen(recovered):
    model, train = recovered
    k, n = 10, 200
    for user in range(20):
        truth = train.truth(np.full(n, user), np.arange(n))
        truth[train.cols[train.rows == user]] = -np.inf
        expected = np.argsort(-truth, kind="stable")[:k]
        np.testing.assert_array_equal(model.recommend(user, k), expected)


def test_recommendations_are_unseen_and_sorted(recovered):
    model, train = recovered
    users = np.array([5, 0, 299, 5])
    top = model.recommend(users, k=7)
    assert top.shape == (4, 7) and np.issubdtype(top.dtype, np.integer)
    for user, items in zip(users, top):
        np.testing.assert_array_equal(items, model.recommend(int(user), k=7))
        assert model.seen_[np.full(7, user), items].sum() == 0
        scores = model.predict(np.full(7, user), items)
        assert np.all(np.diff(scores) <= 0)
        unseen = np.setdiff1d(np.arange(200), train.cols[train.rows == user])
        best = np.sort(model.predict(np.full(unseen.size, user), unseen))[::-1][:7]
        np.testing.assert_array_equal(scores, best)


def test_recommendations_with_seen_items_included(recovered):
    model, _ = recovered
    users = np.arange(30)
    top = model.recommend(users, k=10, exclude_seen=False)
    for user, items in zip(users, top):
        np.testing.assert_array_equal(items, np.argsort(-model.result_.scores(user), kind="stable")[:10])
    # 40% of the entries are observed: some best-scoring items were seen in fit.
    assert model.seen_[np.repeat(users, 10), top.ravel()].sum() > 0
    assert model.recommend(0, k=200, exclude_seen=False).shape == (200,)
    assert model.recommend([], k=3).shape == (0, 3)


def test_bad_user_or_k_is_refused(recovered):
    model, train = recovered
    for user in (-1, 300, [0, 300], [[0, 1]], 1.5, True):
        with pytest.raises(ValueError, match="`user`"):
            model.recommend(user, k=3)
    for k in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="`k`"):
            model.recommend(0, k=k)
    unseen = 200 - int(np.sum(train.rows == 0))
    assert model.recommend(0, k=unseen).shape == (unseen,)
    with pytest.raises(ValueError, match=f"exceeds the {unseen} candidate columns of user 0"):
        model.recommend(0, k=unseen + 1)
    with pytest.raises(ValueError, match="exceeds the 200 candidate columns"):
        model.recommend([0, 1], k=201, exclude_seen=False)


def test_predict_takes_the_indices_fit_takes(recovered):
    model, train = recovered
    rows, cols = train.rows[:5], train.cols[:5]
    np.testing.assert_array_equal(model.predict(rows.astype(float), cols.astype(float)), model.predict(rows, cols))
    assert model.predict([], []).shape == (0,)
    with pytest.raises(TypeError, match="integer indices"):
        model.predict([np.nan], [0])


def test_not_fitted():
    model = randla.MatrixCompletion()
    with pytest.raises(NotFittedError):
        model.predict([0], [0])
    with pytest.raises(NotFittedError):
        model.recommend(0)


def test_params_round_trip_through_clone(recovered):
    model = randla.MatrixCompletion(4, method="altmin", reg=[1.0, 0.1], validation=0.2, biases=True,
                                    max_iter=50, tol=1e-4, cg_steps=5, oversample=3, random_state=7)
    params = model.get_params()
    assert params == dict(rank=4, method="altmin", reg=[1.0, 0.1], n_reg=10, validation=0.2, center=True, biases=True,
                          max_iter=50, tol=1e-4, cg_steps=5, oversample=3, random_state=7)
    assert clone(model).get_params() == params
    assert model.set_params(rank=2, reg=0.5) is model and model.rank == 2 and model.reg == 0.5
    fitted, _ = recovered
    fresh = clone(fitted)
    assert fresh.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict([0], [0])


def test_errors_of_complete_come_through():
    data = ratings(50, 40, 400, 2, rng=0)
    with pytest.raises(ValueError, match="biases"):
        randla.MatrixCompletion(2, biases=True).fit(*data)
    with pytest.raises(ValueError, match="method"):
        randla.MatrixCompletion(2, method="svd").fit(*data)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # max_iter caps for speed
def test_same_random_state_same_model():
    data = ratings(300, 200, 6000, 3, noise=0.1, rng=3)
    params = dict(rank=3, method="softimpute", reg=0.5, max_iter=10)

    def fit(random_state):
        return randla.MatrixCompletion(**params, random_state=random_state).fit(*data, shape=data.shape).U_

    np.testing.assert_array_equal(fit(5), fit(5))
    np.testing.assert_array_equal(fit(np.random.RandomState(5)), fit(np.random.RandomState(5)))
    assert not np.array_equal(fit(5), fit(6))


def test_biases_predict_a_constant_offset():
    data = ratings(300, 200, 15000, 3, noise=0.1, row_activity=0, col_activity=0, rng=4)
    train, test = data.split(0.2, rng=1)
    params = dict(rank=3, method="altmin", reg=1.0, biases=True, max_iter=50, random_state=0)

    def held_out_rmse(offset):
        model = randla.MatrixCompletion(**params)
        model.fit(train.rows, train.cols, train.values + offset, shape=data.shape)
        err = model.predict(test.rows, test.cols) - (test.values + offset)
        return np.sqrt(np.mean(err**2)), model

    plain, _ = held_out_rmse(0.0)
    shifted, model = held_out_rmse(3.0)
    assert plain < 2 * data.noise
    assert abs(shifted - plain) < 0.05 * plain
    assert model.result_.mean == pytest.approx(np.mean(train.values) + 3.0)


def test_bayes_fits_without_reg_and_reports_its_noise_level():
    data = ratings(400, 300, 30000, 3, noise=0.3, row_activity=0, col_activity=0, decay=0, rng=4)
    train, test = data.split(0.2, rng=5)
    model = randla.MatrixCompletion(3, method="bayes", random_state=0).fit(*train, shape=train.shape)
    assert np.isnan(model.reg_) and abs(model.result_.noise / 0.3 - 1) < 0.1
    err = test.values - model.predict(test.rows, test.cols)
    assert np.sqrt(np.mean(err**2)) < 1.1 * 0.3
    assert model.recommend(0, 5).shape == (5,)


def test_a_fit_stopped_by_max_iter_warns():
    data = ratings(300, 200, 6000, 3, noise=0.1, rng=3)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        model = randla.MatrixCompletion(3, reg=0.5, max_iter=3, random_state=0).fit(*data, shape=data.shape)
    assert not model.converged_ and model.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert randla.MatrixCompletion(3, reg=0.5, max_iter=500, random_state=0).fit(*data, shape=data.shape).converged_
