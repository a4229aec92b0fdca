"""The MatrixCompletion estimator: a shell over randla.complete with predictions and recommendations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score

import randla
from randla.testing import ratings
from conftest import torch_sparse


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


def test_a_fit_stopped_by_max_iter_warns_once():
    data = ratings(300, 200, 6000, 3, noise=0.1, rng=3)
    with pytest.warns(ConvergenceWarning, match="max_iter=3") as caught:
        model = randla.MatrixCompletion(3, reg=0.5, max_iter=3, random_state=0).fit(*data, shape=data.shape)
    assert len(caught) == 1 and caught[0].filename == __file__  # not once from complete and once from fit
    assert not model.converged_ and model.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert randla.MatrixCompletion(3, reg=0.5, max_iter=500, random_state=0).fit(*data, shape=data.shape).converged_


# ---- scikit-learn's (X, y): model selection on held-out entries


def _pairs(entries):
    """The (N, 2) array of (row, col) pairs of a Ratings."""
    return np.column_stack([entries.rows, entries.cols])


@pytest.fixture(scope="module")
def noisy():
    """A 300 x 200 rank-3 matrix plus noise 0.1, a quarter of its entries observed; 20% of those held out."""
    data = ratings(300, 200, 15000, 3, noise=0.1, row_activity=0, col_activity=0, decay=0, rng=4)
    return data.split(0.2, rng=1)


def test_fit_takes_x_and_y_as_it_takes_rows_cols_values(noisy):
    train, test = noisy
    params = dict(rank=3, reg=1.0, max_iter=300, random_state=0)
    plain = randla.MatrixCompletion(**params).fit(*train, shape=train.shape)
    from_pairs = randla.MatrixCompletion(**params).fit(_pairs(train), train.values, shape=train.shape)
    frame = pd.DataFrame({"user": train.rows, "item": train.cols})
    from_frame = randla.MatrixCompletion(**params).fit(frame, pd.Series(train.values))
    expected = plain.predict(test.rows, test.cols)
    for model in (from_pairs, from_frame):
        np.testing.assert_array_equal(model.predict(_pairs(test)), expected)
        np.testing.assert_array_equal(model.predict(test.rows, test.cols), expected)
        assert model.row_ids_ is None and model.col_ids_ is None
    np.testing.assert_array_equal(from_frame.predict(pd.DataFrame({"u": test.rows, "i": test.cols})), expected)


def test_score_is_r2_of_the_held_out_entries(noisy):
    train, test = noisy
    model = randla.MatrixCompletion(3, reg=1.0, max_iter=300, random_state=0).fit(_pairs(train), train.values)
    residual = test.values - model.predict(_pairs(test))
    r2 = 1 - residual @ residual / np.sum((test.values - test.values.mean()) ** 2)
    assert model.score(_pairs(test), test.values) == pytest.approx(r2, rel=1e-12)
    assert r2 > 0.95  # noise 0.1 on entries of unit variance: 0.99 is the most to expect


def test_grid_search_picks_a_reg_that_predicts_near_the_noise_level(noisy):
    train, test = noisy
    search = GridSearchCV(randla.MatrixCompletion(3, max_iter=300, random_state=0), {"reg": [0.3, 3.0, 30.0]},
                          cv=KFold(3, shuffle=True, random_state=0))
    search.fit(_pairs(train), train.values)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"reg": [0.3, 3.0, 30.0][int(np.argmax(scores))]}
    assert search.best_params_["reg"] != 30.0  # reg = 30 shrinks every prediction to the mean: R^2 near 0
    rmse = np.sqrt(np.mean((search.predict(_pairs(test)) - test.values) ** 2))
    assert rmse < 1.2 * train.noise  # measured 1.08


def test_grid_search_over_the_rank_finds_the_planted_rank(noisy):
    train, _ = noisy
    search = GridSearchCV(randla.MatrixCompletion(reg=1.0, max_iter=300, random_state=0), {"rank": [1, 3, 8]},
                          cv=KFold(3, shuffle=True, random_state=0))
    search.fit(_pairs(train), train.values)
    assert search.best_params_ == {"rank": 3}


def test_cross_val_score_runs_with_rows_unseen_in_a_fold(noisy):
    """Rows held out whole from a training fold (an index past its shape, or a name it never saw) get the mean:
    the fold is scored, not refused."""
    train, _ = noisy
    model = randla.MatrixCompletion(3, reg=1.0, max_iter=300, random_state=0)
    folds = KFold(3, shuffle=True, random_state=0)
    r2 = cross_val_score(model, _pairs(train), train.values, cv=folds)
    rmse = -cross_val_score(model, _pairs(train), train.values, cv=folds, scoring="neg_root_mean_squared_error")
    # two thirds of the training entries per fold: measured R^2 0.98, RMSE 1.5 x the noise
    assert r2.shape == rmse.shape == (3,) and np.all(r2 > 0.95) and np.all(rmse < 2 * train.noise)
    # Folds by user: every test user is new to its training fold.
    names = pd.DataFrame({"user": [f"user{i}" for i in train.rows], "item": train.cols})
    by_user = GroupKFold(3).split(names, groups=train.rows)
    r2 = cross_val_score(model, names, train.values, cv=by_user)
    assert np.all(np.abs(r2) < 0.05)  # the mean alone: R^2 near 0


def test_clone_and_params_round_trip_after_a_fit_on_x_and_y(noisy):
    train, _ = noisy
    model = randla.MatrixCompletion(3, reg=1.0, max_iter=300, random_state=0).fit(_pairs(train), train.values)
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(_pairs(train))
    assert fresh.set_params(rank=2).fit(_pairs(train), train.values).U_.shape == (300, 2)
    assert model.U_.shape == (300, 3)


def test_bad_x_or_y_is_refused(noisy):
    train, _ = noisy
    model = randla.MatrixCompletion(3, reg=1.0, max_iter=300, random_state=0)
    with pytest.raises(ValueError, match=r"`X` must be an \(N, 2\) array.*got shape \(11982, 3\)"):
        model.fit(np.column_stack([train.rows, train.cols, train.cols]), train.values)
    with pytest.raises(TypeError, match=r"fit\(X, y\)"):
        model.fit(_pairs(train))
    with pytest.raises(ValueError, match="same length"):
        model.fit(_pairs(train), train.values[:-1])
    model.fit(_pairs(train), train.values)
    with pytest.raises(ValueError, match=r"`X` must be an \(N, 2\) array"):
        model.predict(train.rows)


# ---- ids, and rows and columns not seen in fit


@pytest.fixture(scope="module")
def named():
    """The noiseless rank-3 matrix with users and items named, fitted on a DataFrame of names."""
    train, test = _noiseless()
    frame = pd.DataFrame({"user": [f"user{i}" for i in train.rows], "item": [f"item{j}" for j in train.cols]})
    model = randla.MatrixCompletion(3, method="altmin", reg=1e-6, center=False, tol=1e-8, max_iter=300,
                                    random_state=0)
    return model.fit(frame, train.values), train, test


def test_ids_are_fitted_in_order_of_first_appearance_and_recover_the_matrix(named):
    model, train, test = named
    users = list(dict.fromkeys(f"user{i}" for i in train.rows))
    items = list(dict.fromkeys(f"item{j}" for j in train.cols))
    assert list(model.row_ids_) == users and list(model.col_ids_) == items and model.shape_ == (300, 200)
    position = {name: p for p, name in enumerate(users)}
    assert model.seen_[[position[f"user{i}"] for i in train.rows[:50]], [items.index(f"item{j}")
                                                                          for j in train.cols[:50]]].sum() == 50
    names = ([f"user{i}" for i in test.rows], [f"item{j}" for j in test.cols])
    truth = test.truth(test.rows, test.cols)
    assert np.linalg.norm(model.predict(*names) - truth) / np.linalg.norm(truth) < 1e-4
    np.testing.assert_array_equal(model.predict(np.column_stack(names)), model.predict(*names))


def test_recommendations_by_id_are_item_ids(named):
    model, train, _ = named
    for user in range(5):
        truth = train.truth(np.full(200, user), np.arange(200))
        truth[train.cols[train.rows == user]] = -np.inf
        expected = [f"item{j}" for j in np.argsort(-truth, kind="stable")[:10]]
        assert list(model.recommend(f"user{user}", 10)) == expected
    assert model.recommend(["user3", "user0"], 4).shape == (2, 4)
    with pytest.raises(ValueError, match="'nobody', not a row id seen in fit.*recommend_new"):
        model.recommend(["user0", "nobody"], 3)


def test_unknown_rows_and_cols_predict_the_mean_and_the_known_sides_bias():
    data = ratings(300, 200, 15000, 3, noise=0.1, rng=4)
    frame = pd.DataFrame({"user": [f"user{i}" for i in data.rows], "item": data.cols})
    model = randla.MatrixCompletion(3, method="altmin", reg=1.0, biases=True, max_iter=100, random_state=0)
    model.fit(frame, data.values + 3.0)
    result, user = model.result_, list(model.row_ids_).index("user7")
    got = model.predict(["user7", "nobody", "nobody", "user7"], [250, 4, 250, 4])
    expected = [result.mean + result.row_bias[user], result.mean + result.col_bias[4], result.mean,
                result.predict([user], [4])[0]]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # integer indices: one past the fitted shape is unseen, a negative one is an error
    plain = randla.MatrixCompletion(3, reg=1.0, max_iter=300, random_state=0).fit(*data, shape=data.shape)
    np.testing.assert_allclose(plain.predict([300, 0, 10**9], [0, 200, 10**9]), plain.result_.mean, rtol=1e-12)
    with pytest.raises(ValueError, match="`rows` holds index -1, below 0"):
        plain.predict([-1], [0])


def test_ids_with_a_shape_are_refused(named):
    _, train, _ = named
    with pytest.raises(ValueError, match="Leave `shape` at None"):
        randla.MatrixCompletion(3).fit([f"u{i}" for i in train.rows], train.cols, train.values, shape=(300, 200))


def test_held_out_entries_may_be_given_by_id(named):
    _, train, test = named
    users, items = [f"user{i}" for i in train.rows], [f"item{j}" for j in train.cols]
    held = ([f"user{i}" for i in test.rows], [f"item{j}" for j in test.cols], test.values)
    model = randla.MatrixCompletion(3, reg=[1.0, 0.1], validation=held, max_iter=300, random_state=0)
    model.fit(users, items, train.values)
    assert model.reg_ == min(model.result_.path, key=lambda p: p.validation_rmse).reg
    assert np.all(np.isfinite([p.validation_rmse for p in model.result_.path]))
    with pytest.raises(ValueError, match="`validation` holds row ids not among the fitted entries"):
        model.set_params(validation=(["nobody"], ["item0"], [1.0])).fit(users, items, train.values)


# ---- folding in a new row


def _ridge(F, target, reg):
    """The ridge solution from its normal equations."""
    return np.linalg.solve(F.T @ F + reg * np.eye(F.shape[1]), F.T @ target)


@pytest.mark.parametrize("biases", [False, True])
def test_fold_in_is_the_exact_ridge_solution(biases):
    data = ratings(300, 200, 15000, 4, noise=0.3, rng=6)
    method = "altmin" if biases else "softimpute_als"
    model = randla.MatrixCompletion(4, method=method, reg=2.0, biases=biases, max_iter=300, random_state=0)
    model.fit(*data, shape=data.shape)
    rng = np.random.default_rng(0)
    cols = rng.choice(200, 25, replace=False)
    values = rng.normal(size=25) + 1.0
    before = cols.copy(), values.copy()
    F = model.Vh_.T[cols] * np.sqrt(model.S_)
    target = values - model.result_.mean
    if biases:
        F = np.column_stack([F, np.ones(25)])
        target = target - model.result_.col_bias[cols]
    expected = _ridge(F, target, 2.0)
    np.testing.assert_allclose(model.fold_in(cols, values), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(before[0], cols)
    np.testing.assert_array_equal(before[1], values)
    # columns past the fitted shape carry no factor and are left out
    np.testing.assert_allclose(model.fold_in(np.append(cols, 200), np.append(values, 9.0)), expected, rtol=1e-10)


def test_fold_in_gives_back_a_fitted_rows_factor_at_the_optimum(recovered):
    model, train = recovered
    for row in (0, 17, 250):
        mine = train.rows == row
        factor = model.fold_in(train.cols[mine], train.values[mine])
        np.testing.assert_allclose(factor, model.U_[row] * np.sqrt(model.S_), rtol=1e-5, atol=1e-8)


def test_a_folded_in_row_of_a_low_rank_matrix_is_predicted_near_the_truth():
    data = ratings(301, 200, 24000, 3, noise=0.0, row_activity=0, col_activity=0, decay=0, rng=0)
    new = data.rows == 300
    model = randla.MatrixCompletion(3, method="altmin", reg=1e-6, center=False, tol=1e-8, max_iter=300,
                                    random_state=0).fit(data.rows[~new], data.cols[~new], data.values[~new])
    assert model.shape_ == (300, 200) and 40 <= new.sum() <= 120
    factor = model.fold_in(data.cols[new], data.values[new])
    predicted = model.result_.mean + model.Vh_.T @ (np.sqrt(model.S_) * factor)
    truth = data.truth(np.full(200, 300), np.arange(200))
    assert np.linalg.norm(predicted - truth) / np.linalg.norm(truth) < 1e-4
    truth[data.cols[new]] = -np.inf
    np.testing.assert_array_equal(model.recommend_new(data.cols[new], data.values[new], k=10),
                                  np.argsort(-truth, kind="stable")[:10])


def test_recommend_new_by_id_leaves_out_the_rows_own_items(named):
    model, train, _ = named
    mine = train.rows == 0
    items = [f"item{j}" for j in train.cols[mine]]
    top = model.recommend_new(items, train.values[mine], k=10)
    assert not set(top) & set(items)
    np.testing.assert_array_equal(top, model.recommend("user0", 10))  # user0 folded in is user0
    assert set(items) & set(model.recommend_new(items, train.values[mine], k=200, exclude_seen=False))
    with pytest.raises(ValueError, match=f"exceeds the {200 - len(items)} candidate columns of the new row"):
        model.recommend_new(items, train.values[mine], k=201 - len(items))


def test_fold_in_refuses_bad_entries_and_bayes(recovered):
    model, _ = recovered
    with pytest.raises(ValueError, match="same length"):
        model.fold_in([0, 1], [1.0])
    with pytest.raises(ValueError, match="more than once"):
        model.fold_in([0, 0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        model.fold_in([0, 1], [1.0, np.nan])
    with pytest.raises(TypeError, match="integer indices"):
        model.fold_in([0.5], [1.0])
    data = ratings(200, 100, 4000, 2, noise=0.3, rng=0)
    bayes = randla.MatrixCompletion(2, method="bayes", random_state=0).fit(*data, shape=data.shape)
    with pytest.raises(ValueError, match="method='bayes'"):
        bayes.fold_in([0, 1], [1.0, 2.0])


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_fits_torch_sparse_tensors_as_complete_does(layout):
    """complete reads a torch sparse tensor as SciPy's; so does fit, the observed pattern included."""
    data = ratings(50, 40, 600, rank=3, noise=0.3, rng=1)
    A = sp.coo_array((data.values, (data.rows, data.cols)), shape=data.shape)
    model = randla.MatrixCompletion(3, reg=1.0, random_state=0).fit(torch_sparse(A, layout))  # before: TypeError
    plain = randla.MatrixCompletion(3, reg=1.0, random_state=0).fit(A)
    assert (model.seen_ != plain.seen_).nnz == 0 and model.seen_.nnz == 600
    np.testing.assert_array_equal(model.predict(data.rows, data.cols), plain.predict(data.rows, data.cols))
    np.testing.assert_array_equal(model.recommend([0, 7], k=5), plain.recommend([0, 7], k=5))


def test_tuple_ids_work_in_fit_predict_and_recommend():
    """Tuples are hashable ids: from an object array or a plain list of them, and as one user in recommend
    (not the sequence of its parts); the model is the one fitted with the same ids as strings."""
    data = ratings(60, 40, 800, rank=3, noise=0.3, rng=1)
    names = [("site", int(i)) for i in data.rows]
    users = np.empty(len(names), dtype=object)
    users[:] = names
    model = randla.MatrixCompletion(3, reg=1.0, random_state=0)
    from_list = clone(model).fit(names, data.cols, data.values)  # before: ValueError, shape (800, 2)
    from_array = clone(model).fit(users, data.cols, data.values)
    as_strings = clone(model).fit([f"site-{i}" for i in data.rows], data.cols, data.values)
    assert from_list.row_ids_.shape == (len(set(names)),) and from_list.row_ids_[0] == names[0]
    for fitted in (from_list, from_array):
        np.testing.assert_array_equal(fitted.predict(names[:5], data.cols[:5]),
                                      as_strings.predict([f"site-{i}" for i in data.rows[:5]], data.cols[:5]))
        top = fitted.recommend(("site", 7), 3)  # before: ValueError, 'site' not a row id
        assert top.shape == (3,)
        np.testing.assert_array_equal(top, as_strings.recommend("site-7", 3))
        np.testing.assert_array_equal(fitted.recommend([("site", 7), ("site", 9)], 3),
                                      as_strings.recommend(["site-7", "site-9"], 3))
    assert from_list.predict([("site", 10**6)], [0])[0] == pytest.approx(from_list.result_.mean)  # unseen: mu
    with pytest.raises(ValueError, match="not a row id seen in fit"):
        from_list.recommend(("site", 10**6), 3)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
@pytest.mark.parametrize("method", ["softimpute_als", "bayes"])
def test_entries_of_any_magnitude_predict_and_recommend_as_at_1(method, scale):
    """Before: fit raised (a broadcast error at 1e-200, an overflow at 1e200) where randla.complete lost the
    model; predictions, recommendations and folded-in rows scale with the entries."""
    data = ratings(60, 40, 900, rank=3, noise=0.1, rng=0)
    plain = randla.MatrixCompletion(3, method=method, random_state=0).fit(*data, shape=data.shape)
    scaled = randla.MatrixCompletion(3, method=method, random_state=0).fit(data.rows, data.cols,
                                                                           data.values * scale, shape=data.shape)
    expected = plain.predict(data.rows, data.cols)
    rtol = 1e-5 if method == "bayes" else 1e-12  # "bayes": float32 moments (measured 1.0e-6 of the largest)
    np.testing.assert_allclose(scaled.predict(data.rows, data.cols) / scale, expected, rtol=0,
                               atol=rtol * np.abs(expected).max())
    np.testing.assert_array_equal(scaled.recommend(np.arange(60), k=2), plain.recommend(np.arange(60), k=2))
    if method != "bayes":  # fold_in needs a reg
        first = data.rows == 0
        F, offset = scaled._col_design()
        row = F @ scaled.fold_in(data.cols[first], data.values[first] * scale) + offset
        F, offset = plain._col_design()
        np.testing.assert_allclose(row / scale, F @ plain.fold_in(data.cols[first], data.values[first]) + offset,
                                   rtol=0, atol=1e-12 * np.abs(expected).max())
