"""randla.StreamingPCA: the Frequent Directions bounds against the exact covariance,
exact means and totals whatever the batching, containers and bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import randla
from randla.testing import low_rank, planted


def stream(X, k, batches=20, **kwargs):
    pca = randla.StreamingPCA(k, **kwargs)
    bounds = np.linspace(0, X.shape[0], batches + 1).round().astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        pca.partial_fit(X[start:stop])
    return pca


def slow_decay(m=6000, n=300, offset=5.0):
    return planted(m, n, "polynomial", rate=0.8, rng=0).A + offset


def covariance_eigen(X):
    w, V = np.linalg.eigh(np.cov(X, rowvar=False))
    return w[::-1], V[:, ::-1]


@pytest.mark.parametrize("sketch_size", [10, 20, 60])
def test_frequent_directions_bounds_hold(sketch_size):
    X = slow_decay()
    k = 10
    pca = stream(X, k, sketch_size=sketch_size)
    lam, _ = covariance_eigen(X)
    bound = pca.variance_error_bound_
    assert bound > 0
    # The sketch's covariance is below the true one, and within the bound of it.
    B = pca._buffer.astype(np.float64)
    gap = np.linalg.eigvalsh(np.cov(X, rowvar=False) - B.T @ B / (X.shape[0] - 1))
    assert gap[0] >= -1e-12 * lam[0] and gap[-1] <= bound * (1 + 1e-9)
    # The a priori bound: Delta <= tail_j / (s + 1 - j) for the s = l - floor(l/2)
    # directions a cut shrinks, every j <= s.
    shrunk = sketch_size - sketch_size // 2
    for j in range(0, shrunk + 1):
        assert bound <= np.sum(lam[j:]) / (shrunk + 1 - j) * (1 + 1e-9)
    ev = pca.explained_variance_  # the lower end of the bracket [sigma^2, sigma^2 + Delta] / (N - 1)
    assert np.all(ev <= lam[:k] * (1 + 1e-12)) and np.all(ev >= lam[:k] - bound * (1 + 1e-9))


def test_default_sketch_captures_near_optimal_variance():
    X = slow_decay()
    k = 10
    pca = stream(X, k)
    lam, _ = covariance_eigen(X)
    V = pca.components_
    captured = np.trace(V @ np.cov(X, rowvar=False) @ V.T) / np.sum(lam[:k])
    assert captured >= 0.9999
    # The leading half of the sketch is never shrunk, so the leading axes' variances
    # come out within 1%, far inside the bracket.
    np.testing.assert_allclose(pca.explained_variance_, lam[:k], rtol=1e-2)
    np.testing.assert_allclose(V @ V.T, np.eye(k), atol=1e-12)


def test_exact_when_the_data_fit_in_the_sketch():
    X = low_rank(3000, 80, rank=6, rng=0) + 2.0
    pca = stream(X, 6, batches=7, sketch_size=12)
    lam, W = covariance_eigen(X)
    assert pca.variance_error_bound_ < 1e-12 * lam[0]
    np.testing.assert_allclose(pca.explained_variance_, lam[:6], rtol=1e-9)
    signs = np.sign(np.sum(pca.components_ * W[:, :6].T, axis=1))
    np.testing.assert_allclose(pca.components_ * signs[:, None], W[:, :6].T, atol=1e-8)


def test_means_and_total_variance_are_exact_whatever_the_batches():
    X = slow_decay(1000, 40, offset=1e4)  # means 10^4 times the spread
    one = stream(X, 5, batches=1)
    rows = stream(X, 5, batches=1000)
    uneven = randla.StreamingPCA(5).fit(X[a:b] for a, b in [(0, 1), (1, 400), (400, 401), (401, 1000)])
    for pca in (one, rows, uneven):
        assert pca.n_samples_seen_ == 1000
        np.testing.assert_allclose(pca.mean_, X.mean(axis=0), rtol=1e-14)
        assert pca.total_variance_ == pytest.approx(np.var(X, axis=0, ddof=1).sum(), rel=1e-10)
        lam, _ = covariance_eigen(X)
        V = pca.components_
        assert np.trace(V @ np.cov(X, rowvar=False) @ V.T) >= 0.999 * np.sum(lam[:5])


def test_containers_and_precision():
    X = slow_decay(2000, 60)
    reference = stream(X, 5)
    as_torch = stream(torch.from_numpy(X), 5)
    np.testing.assert_allclose(np.abs(as_torch.components_.numpy()), np.abs(reference.components_), atol=1e-9)
    as_sparse = stream(sp.csr_array(X), 5)
    np.testing.assert_allclose(as_sparse.explained_variance_, reference.explained_variance_, rtol=1e-12)
    single = stream(X.astype(np.float32), 5)
    assert single.components_.dtype == np.float32 and single.mean_.dtype == np.float32
    np.testing.assert_allclose(single.explained_variance_, reference.explained_variance_, rtol=1e-4)
    half = stream(torch.from_numpy(X).bfloat16(), 5)
    assert half.components_.dtype == torch.bfloat16
    integers = stream(np.rint(X * 100).astype(np.int64), 5)
    assert integers.components_.dtype == np.float64


def test_transform_and_inverse_transform():
    X = low_rank(500, 30, rank=3, rng=1) + 4.0
    pca = stream(X, 3, batches=5)
    Z = pca.transform(X)
    np.testing.assert_allclose(Z, (X - X.mean(axis=0)) @ pca.components_.T, atol=1e-10)
    np.testing.assert_allclose(pca.inverse_transform(Z), X, atol=1e-8)  # rank 3: nothing lost
    np.testing.assert_allclose(pca.transform(sp.csr_array(X)), Z, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_round_trip(dtype):
    """Kept in float32, the axes meet transform's half-precision output in inverse_transform."""
    X = torch.as_tensor(low_rank(400, 20, rank=3, rng=1) + 2.0).to(dtype)
    pca = stream(X, 3, batches=4)
    Z = pca.transform(X[:5])
    back = pca.inverse_transform(Z)
    assert Z.dtype == back.dtype == dtype and back.shape == (5, 20)
    torch.testing.assert_close(back.float(), X[:5].float(), atol=0.1, rtol=0.02)


def test_batches_are_not_modified():
    X = slow_decay(300, 20)
    before = X.copy()
    stream(X, 3, batches=3)
    np.testing.assert_array_equal(X, before)


def test_bad_input():
    X = slow_decay(100, 20)
    with pytest.raises(ValueError, match="n_components"):
        randla.StreamingPCA(0)
    with pytest.raises(ValueError, match="sketch_size"):
        randla.StreamingPCA(5, sketch_size=4)
    pca = randla.StreamingPCA(3).partial_fit(X[:1])
    with pytest.raises(ValueError, match="at least 2 rows"):
        pca.mean_
    with pytest.raises(ValueError, match="at least 3 rows"):
        pca.components_
    with pytest.raises(ValueError, match="20 features"):
        pca.partial_fit(X[:5, :10])
    with pytest.raises(ValueError, match="first one's library"):
        pca.partial_fit(torch.from_numpy(X[:5]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        pca.partial_fit(X[:5] * np.nan)
    with pytest.raises(ValueError, match="2-D"):
        pca.partial_fit(X[0])
    with pytest.raises(TypeError, match="real numbers"):
        pca.partial_fit(X[:5] * 1j)
    with pytest.raises(TypeError, match="2-D array"):
        pca.partial_fit("rows")
    assert pca.n_samples_seen_ == 1  # the refused batches changed nothing
    pca.partial_fit(X[1:2])
    assert pca.mean_.shape == (20,)
    with pytest.raises(ValueError, match=r"StreamingPCA\(n_components=3\) needs at least 3 rows.*seen 2"):
        pca.singular_values_  # fewer rows than axes: the third would be undefined
    fitted = stream(X, 3, batches=2)
    with pytest.raises(ValueError, match=r"shape \(p, 20\)"):
        fitted.transform(X[:, :5])
    with pytest.raises(TypeError, match=r"fitted on \(numpy\); got torch.Tensor"):
        fitted.transform(torch.from_numpy(X))
    with pytest.raises(TypeError, match=r"fitted on \(numpy\); got builtins.list"):
        fitted.inverse_transform([[1.0, 2.0, 3.0]])
    on_torch = stream(torch.from_numpy(X), 3, batches=2)
    with pytest.raises(TypeError, match=r"fitted on \(torch\); got numpy.ndarray"):
        on_torch.transform(X)
    with pytest.raises(TypeError, match=r"fitted on \(torch\); got scipy"):
        on_torch.transform(sp.csr_array(X))


# The IncrementalPCA estimator (sklearn's conformance checks run in test_estimators.py).


@pytest.mark.parametrize("whiten", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_incremental_estimator_matches_exact_pca_when_the_data_fit_the_sketch(whiten, sparse):
    from sklearn.decomposition import PCA

    X = low_rank(1200, 40, rank=5, noise=1e-3, rng=2) + 1.5
    ours = randla.IncrementalPCA(n_components=5, whiten=whiten, batch_size=100, sketch_size=40)
    exact = PCA(n_components=5, whiten=whiten, svd_solver="full").fit(X)
    Z = ours.fit_transform(sp.csr_array(X) if sparse else X)
    for name in ["explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(exact, name), rtol=1e-8)
    assert ours.noise_variance_ == pytest.approx(exact.noise_variance_, rel=1e-6)
    signs = np.sign(np.sum(ours.components_ * exact.components_, axis=1))
    np.testing.assert_allclose(Z, exact.transform(X) * signs, atol=1e-8)
    np.testing.assert_allclose(ours.inverse_transform(Z), exact.inverse_transform(exact.transform(X)), atol=1e-8)
    if not whiten:  # scikit-learn's covariance multiplies whitened components by sqrt(explained_variance_)
        np.testing.assert_allclose(ours.score_samples(X), exact.score_samples(X), rtol=1e-6)
    assert ours.n_samples_seen_ == 1200 and ours.batch_size_ == 100


def test_incremental_estimator_partial_fit_equals_fit_and_takes_small_batches():
    X = slow_decay(900, 30)
    whole = randla.IncrementalPCA(n_components=8, batch_size=3).fit(X)  # batches smaller than k
    pieces = randla.IncrementalPCA(n_components=8)
    for start in range(0, 900, 3):
        pieces.partial_fit(X[start : start + 3])
    np.testing.assert_array_equal(whole.components_, pieces.components_)
    assert pieces.n_samples_seen_ == 900
    lam, _ = covariance_eigen(X)
    V = whole.components_
    assert np.trace(V @ np.cov(X, rowvar=False) @ V.T) >= 0.999 * np.sum(lam[:8])
    with pytest.raises(ValueError, match="features"):
        pieces.partial_fit(X[:5, :10])


def test_incremental_estimator_is_fitted_once_it_has_n_components_rows():
    from sklearn.exceptions import NotFittedError

    X = slow_decay(50, 20)
    ipca = randla.IncrementalPCA(n_components=5).partial_fit(X[:1])
    with pytest.raises(NotFittedError):
        ipca.transform(X)
    ipca.partial_fit(X[1:4])  # 4 rows: a fifth axis would be undefined
    with pytest.raises(NotFittedError):
        ipca.transform(X)
    ipca.partial_fit(X[4:6])
    assert ipca.n_components_ == 5 and ipca.transform(X).shape == (50, 5)
    with pytest.raises(ValueError, match="n_components=5 needs at least as many rows; X has 4"):
        randla.IncrementalPCA(n_components=5).fit(X[:4])


def test_a_dask_array_is_read_once():
    import collections
    import threading

    import dask.array as da

    X = slow_decay(1000, 40)
    reads, lock = collections.Counter(), threading.Lock()

    def load(block, block_info=None):
        with lock:
            reads[tuple(block_info[0]["chunk-location"])] += 1
        return block

    D = da.from_array(X, chunks=(150, 20)).map_blocks(load, dtype=X.dtype)
    pca = randla.StreamingPCA(5).fit(D)
    assert len(reads) == 7 * 2 and set(reads.values()) == {1}
    same_blocks = randla.StreamingPCA(5).fit(X[i : i + 150] for i in range(0, 1000, 150))
    np.testing.assert_allclose(pca.mean_, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(pca.explained_variance_, same_blocks.explained_variance_, rtol=1e-12)
    with pytest.raises(ValueError, match="2-D"):
        randla.StreamingPCA(2).fit(da.zeros((4, 3, 2)))


@pytest.mark.parametrize("wrap", [np.asarray, torch.as_tensor, sp.csr_matrix, sp.csc_array, sp.coo_array])
def test_a_whole_matrix_is_fitted_in_blocks_of_rows(wrap, monkeypatch):
    from randla import streaming

    monkeypatch.setattr(streaming, "_BLOCK_ENTRIES", 40 * 128)  # blocks of 128 rows
    X = slow_decay(1000, 40)
    sizes = []
    original = randla.StreamingPCA.partial_fit
    monkeypatch.setattr(randla.StreamingPCA, "partial_fit", lambda self, B: sizes.append(B.shape[0]) or original(self, B))
    pca = randla.StreamingPCA(5, sketch_size=40).fit(wrap(X))
    assert sizes == [128] * 7 + [104]
    # A sketch as wide as the data is exact: the covariance's own eigenvalues.
    np.testing.assert_allclose(np.asarray(pca.explained_variance_), covariance_eigen(X)[0][:5], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(pca.mean_), X.mean(axis=0), rtol=1e-13)


def test_a_dask_array_chunked_by_columns_is_read_in_bounded_blocks(monkeypatch):
    import dask.array as da

    from randla import streaming

    monkeypatch.setattr(streaming, "_BLOCK_ENTRIES", 40 * 100)
    X = slow_decay(1000, 40)
    sizes = []
    original = randla.StreamingPCA.partial_fit
    monkeypatch.setattr(randla.StreamingPCA, "partial_fit", lambda self, B: sizes.append(B.shape[0]) or original(self, B))
    pca = randla.StreamingPCA(5, sketch_size=40).fit(da.from_array(X, chunks=(1000, 10)))
    assert sizes == [100] * 10  # not the one chunk of rows, the whole array
    np.testing.assert_allclose(np.asarray(pca.explained_variance_), covariance_eigen(X)[0][:5], rtol=1e-10)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        D = da.from_array(X, chunks=(100, 40))
        randla.StreamingPCA(2).fit(D[D[:, 0] > 0])


@pytest.mark.filterwarnings("ignore:Sparse (CSR|BSR) tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "uncoalesced_coo", "hybrid_coo", "csr", "csc", "bsr"])
def test_torch_sparse_matrices_and_batches_are_fitted_as_dense_ones(layout, monkeypatch):
    """torch slices no sparse layout by rows and its sparse tensors enter no dense
    operation: batches are densified one at a time, as SciPy's are."""
    from randla import streaming

    monkeypatch.setattr(streaming, "_BLOCK_ENTRIES", 40 * 128)  # blocks of 128 rows
    X = np.where(np.random.default_rng(0).random((1000, 40)) < 0.3, slow_decay(1000, 40), 0.0)
    X[::7] = 0.0  # empty rows, and blocks that start or end on one
    dense = torch.as_tensor(X)

    def sparse(T):
        if layout == "uncoalesced_coo":  # every entry split in two parts
            C = T.to_sparse_coo()
            return torch.sparse_coo_tensor(torch.cat([C.indices()] * 2, 1), torch.cat([C.values() / 2] * 2),
                                           T.shape, check_invariants=True)
        if layout == "hybrid_coo":
            return T.to_sparse(1)  # the stored rows dense
        return {"coo": T.to_sparse_coo, "csr": T.to_sparse_csr, "csc": T.to_sparse_csc,
                "bsr": lambda: T.to_sparse_bsr((2, 2))}[layout]()

    S = sparse(dense)
    assert S.layout != torch.strided
    whole, reference = randla.StreamingPCA(5, sketch_size=40).fit(S), randla.StreamingPCA(5, sketch_size=40).fit(dense)
    batches, dense_batches = randla.StreamingPCA(5, sketch_size=40), randla.StreamingPCA(5, sketch_size=40)
    for start in range(0, 1000, 300):
        batches.partial_fit(sparse(dense[start : start + 300]))
        dense_batches.partial_fit(dense[start : start + 300])
    for ours, same in ((whole, reference), (batches, dense_batches)):
        assert ours.n_samples_seen_ == 1000
        assert torch.equal(ours.mean_, same.mean_)
        np.testing.assert_allclose(ours.explained_variance_.numpy(), same.explained_variance_.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.components_.numpy(), same.components_.numpy(), atol=1e-10)
    # A sketch as wide as the data is exact: the covariance's own eigenvalues.
    np.testing.assert_allclose(whole.explained_variance_.numpy(), covariance_eigen(X)[0][:5], rtol=1e-10)
    np.testing.assert_allclose(whole.mean_.numpy(), X.mean(axis=0), rtol=1e-13)
    assert torch.equal(S.to_dense(), dense)  # the input as it was


@pytest.mark.parametrize("wrap", [np.asarray, torch.as_tensor])
def test_a_3d_array_is_a_sequence_of_batches(wrap):
    X = slow_decay(1000, 40)
    whole = randla.StreamingPCA(5, sketch_size=40).fit(X)
    stacked = randla.StreamingPCA(5, sketch_size=40).fit(wrap(X.reshape(10, 100, 40)))
    assert stacked.n_samples_seen_ == 1000
    np.testing.assert_allclose(np.asarray(stacked.explained_variance_), whole.explained_variance_, rtol=1e-10)


def test_empty_dask_chunks_are_skipped():
    import dask.array as da

    X = slow_decay(200, 10)
    D = da.from_array(X, chunks=(50, 10))
    D = D[da.from_array(np.arange(200) % 100 < 50, chunks=50)]  # chunks of 50, 0, 50, 0 rows
    D.compute_chunk_sizes()
    assert 0 in D.chunks[0]
    pca = randla.StreamingPCA(3, sketch_size=10).fit(D)
    kept = X[np.arange(200) % 100 < 50]
    np.testing.assert_allclose(np.asarray(pca.explained_variance_), covariance_eigen(kept)[0][:3], rtol=1e-10)


def test_activations_that_require_grad_keep_no_graph():
    layer = torch.nn.Linear(32, 32)
    pca = randla.StreamingPCA(4)
    for _ in range(3):
        pca.partial_fit(layer(torch.randn(50, 32)))
    assert not pca.components_.requires_grad and not pca.mean_.requires_grad
    assert not pca.transform(torch.randn(2, 32)).requires_grad


def test_a_batch_is_copied_once():
    """The centred rows are the one batch-sized copy: sums and scatter are
    accumulated in double without copies of their own."""
    X = np.random.default_rng(0).standard_normal((100_000, 50))
    tracemalloc.start()
    randla.StreamingPCA(5).partial_fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.25 * X.nbytes


def test_incremental_estimators_default_batch_is_bounded_in_bytes():
    """5 n_features rows by default, as scikit-learn, unless that batch,
    densified, would take more than 128 MiB."""
    X = sp.random_array((20_000, 5_000), density=1e-3, format="csr", rng=np.random.default_rng(0))
    assert randla.IncrementalPCA(5).fit(X).batch_size_ == 2**27 // (8 * 5_000)
    assert randla.IncrementalPCA(5).fit(slow_decay(300, 20)).batch_size_ == 100


def test_components_signs_follow_the_axes_alone():
    """After every batch the largest entry of each axis is positive (LAPACK's
    signs are arbitrary), so the one-pass axes come out as PCA's of all rows."""
    X = randla.testing.low_rank(600, 30, rank=3, noise=0.01, rng=0) + 1.0
    pca = randla.StreamingPCA(3, sketch_size=30)
    for batch in np.array_split(X, 12):
        V = pca.partial_fit(batch).components_
        np.testing.assert_array_equal(V[np.arange(3), np.argmax(np.abs(V), axis=1)] > 0, True)
    np.testing.assert_allclose(V, randla.PCA(3, random_state=0).fit(X).components_, atol=1e-8)


@pytest.mark.parametrize("wrap", [np.asarray, torch.from_numpy])
def test_var_is_each_columns_exact_variance(wrap):
    X = randla.testing.low_rank(500, 20, rank=3, noise=0.1, rng=0) * 10 + 1e4
    pca = randla.StreamingPCA(3)
    for batch in np.array_split(X, 7):
        pca.partial_fit(wrap(batch))
    np.testing.assert_allclose(np.asarray(pca.var_), np.var(X, axis=0), rtol=1e-10)


def test_incremental_pca_var_and_sizes_fixed_between_partial_fits():
    from sklearn.decomposition import IncrementalPCA as SklearnIncrementalPCA

    X = randla.testing.low_rank(400, 20, rank=3, noise=0.1, rng=0) + 5.0
    ours = randla.IncrementalPCA(n_components=3, batch_size=100).fit(X)
    theirs = SklearnIncrementalPCA(n_components=3, batch_size=100).fit(X)
    np.testing.assert_allclose(ours.var_, theirs.var_, rtol=1e-10)
    model = randla.IncrementalPCA(n_components=2).partial_fit(X[:100])
    for name, value in (("n_components", 4), ("sketch_size", 12)):
        with pytest.raises(ValueError, match=f"{name} changed to {value}"):
            model.set_params(**{name: value}).partial_fit(X[100:200])
        model.set_params(n_components=2, sketch_size=None)
    model.set_params(n_components=4).fit(X)  # fit starts over
    assert model.n_components_ == 4


def test_fit_starts_over_as_scikit_learn_does():
    """A second fit mixed both data sets: mean 39.98 where the second set's is 100.04."""
    rng = np.random.default_rng(0)
    X1, X2 = rng.standard_normal((300, 10)), rng.standard_normal((200, 10)) * 5 + 100
    refit, fresh = randla.StreamingPCA(2).fit(X1).fit(X2), randla.StreamingPCA(2).fit(X2)
    assert refit.n_samples_seen_ == 200
    np.testing.assert_array_equal(refit.mean_, X2.mean(axis=0))
    np.testing.assert_array_equal(refit.components_, fresh.components_)
    assert randla.StreamingPCA(2).fit(X1).fit(X2[:, :4]).mean_.shape == (4,)  # new width: a new fit


@pytest.mark.parametrize("make,error,match", [
    pytest.param(lambda X: pd.DataFrame(X), TypeError, r"got a DataFrame of shape \(100, 6\).*df\.to_numpy\(\)",
                 id="DataFrame"),
    pytest.param(lambda X: pd.DataFrame(X, columns=list("abcdef")), TypeError, r"DataFrame of shape \(100, 6\)",
                 id="DataFrame-named-columns"),
    pytest.param(lambda X: X[0], ValueError, r"got a 1-D ndarray of shape \(6,\).*X\[None, :\]", id="1-D-numpy"),
    pytest.param(lambda X: torch.from_numpy(X[0]), ValueError, r"got a 1-D Tensor of shape \(6,\)", id="1-D-torch"),
    pytest.param(lambda X: X.tolist(), TypeError, r"got a list of lists.*np\.asarray\(X\)", id="list-of-lists"),
])
def test_fit_names_a_dataframe_a_1d_array_or_nested_lists_it_refuses(make, error, match):
    """Each was iterated into 'batches' it never held (column labels, numbers, rows as lists),
    and the error named those: int, str, shape ()."""
    X = np.random.default_rng(0).standard_normal((100, 6))
    with pytest.raises(error, match=match):
        randla.StreamingPCA(2).fit(make(X))


@pytest.mark.parametrize("make", [
    lambda X: X, lambda X: torch.from_numpy(X), lambda X: sp.csr_array(X), lambda X: X.reshape(4, 25, 6),
    lambda X: [X[:40], X[40:]], lambda X: (X[i : i + 10] for i in range(0, 100, 10)),
], ids=["numpy", "torch", "sparse", "3-D", "list-of-batches", "generator"])
def test_fit_takes_every_documented_input(make):
    X = np.random.default_rng(0).standard_normal((100, 6))
    pca = randla.StreamingPCA(2).fit(make(X))
    assert pca.n_samples_seen_ == 100
    np.testing.assert_allclose(pca.mean_, X.mean(axis=0), atol=1e-14)


def test_incremental_estimator_checks_whiten():
    X = low_rank(200, 10, rank=3, rng=0)
    for call in (lambda e: e.fit(X), lambda e: e.partial_fit(X)):
        with pytest.raises(ValueError, match="`whiten` must be a bool.*got 'no'"):
            call(randla.IncrementalPCA(3, whiten="no"))
    whitened = randla.IncrementalPCA(3, whiten=np.True_).fit_transform(X)
    np.testing.assert_allclose(whitened.var(axis=0, ddof=1), 1.0, rtol=1e-10)


def extreme_scale_data():
    """Rows of rank 5 around a mean of 1, 12 features."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((200, 5)) @ rng.standard_normal((5, 12)) + 1.0


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e160])
def test_streaming_pca_scales_with_the_data_at_any_magnitude(scale):
    """At 1e-200 ... 1e160 the one-pass PCA is numpy.linalg's of the unscaled data, the values
    scaled (a sketch of n rows is exact): the buffer's Gram matrix is formed of scaled rows (its
    squares underflow below ~1e-160 and overflow above ~1e155) and the scatter is kept as a scale
    and a sum of scaled squares. Variances past the double range are inf (NumPy's overflow
    warning), never an OverflowError."""
    X = extreme_scale_data()
    m, n = X.shape
    _, s, vh = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    with np.errstate(over="ignore"):  # the variances at 1e160 (~1e320): inf
        pca = randla.StreamingPCA(3, sketch_size=n)
        for batch in np.array_split(X * scale, 4):
            pca.partial_fit(batch)
        estimator = randla.IncrementalPCA(3, sketch_size=n, batch_size=50).fit(X * scale)
        total, var = pca.total_variance_, pca.var_
        exact_total = (np.sqrt(np.sum(s**2) / (m - 1)) * scale) ** 2
        exact_var = (np.std(X, axis=0) * scale) ** 2
        variance = (s[:3] / np.sqrt(m - 1) * scale) ** 2
        noise = (np.sqrt(np.sum(s[3:] ** 2) / ((m - 1) * (n - 3))) * scale) ** 2
    for ours in (pca, estimator):
        np.testing.assert_allclose(ours.singular_values_ / scale, s[:3], rtol=1e-12)
        np.testing.assert_allclose(ours.explained_variance_ratio_, s[:3] ** 2 / np.sum(s**2), rtol=1e-12)
        np.testing.assert_allclose(np.abs(ours.components_ @ vh[:3].T), np.eye(3), atol=1e-12)
        np.testing.assert_allclose(ours.mean_ / scale, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(estimator.explained_variance_, variance, rtol=1e-12)  # inf at 1e160, 0 at 1e-200
    assert estimator.noise_variance_ == pytest.approx(noise, rel=1e-10)
    assert total == pytest.approx(exact_total, rel=1e-12)
    np.testing.assert_allclose(var, exact_var, rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e160])
def test_streaming_pca_cuts_are_scale_free(scale):
    """With a sketch of fewer rows than features (Frequent Directions' cuts), the singular values,
    shares and axes at 1e-200 and 1e160 are those of the same stream of the unscaled data, scaled."""
    X = np.random.default_rng(1).standard_normal((400, 30)) * np.linspace(3, 0.1, 30) + 2.0
    unscaled, scaled = randla.StreamingPCA(3, sketch_size=6), randla.StreamingPCA(3, sketch_size=6)
    for batch in np.array_split(X, 8):
        unscaled.partial_fit(batch)
        scaled.partial_fit(batch * scale)
    np.testing.assert_allclose(scaled.singular_values_ / scale, unscaled.singular_values_, rtol=1e-9)
    np.testing.assert_allclose(scaled.explained_variance_ratio_, unscaled.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(scaled.components_ @ unscaled.components_.T), np.eye(3), atol=1e-9)
    assert unscaled.variance_error_bound_ > 1e-3 * unscaled.total_variance_  # the cuts dropped variance


@pytest.mark.parametrize("wrap", [np.asarray, sp.csr_array, torch.from_numpy])
def test_transform_and_inverse_transform_refuse_complex_input(wrap):
    """As partial_fit refuses complex batches (and scikit-learn's IncrementalPCA.transform): the
    real axes would silently drop the imaginary part."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 20))
    pca = randla.StreamingPCA(3).fit(torch.from_numpy(X) if wrap is torch.from_numpy else X)
    Z = wrap(X[:5] + 1j * rng.standard_normal((5, 20)))
    with pytest.raises(TypeError, match=r"`X` must hold real numbers.*got dtype .*complex128.*randla\.pca"):
        pca.transform(Z)
    if wrap is not sp.csr_array:
        with pytest.raises(TypeError, match=r"`Z` must hold real numbers.*complex128"):
            pca.inverse_transform(wrap(np.ones((2, 3)) + 1j))


def test_incremental_pca_centres_a_densified_sparse_batch_in_place():
    """A sparse batch is densified into a private copy, which is centred in place: the batch takes
    its dense size once, not twice (the default batch's documented 128 MiB holds), and the
    caller's sparse matrix is left as it was."""
    X = sp.random_array((20_000, 500), density=0.01, format="csr", rng=np.random.default_rng(0))
    before = X.copy()
    batch = 8_000
    tracemalloc.start()
    ours = randla.IncrementalPCA(5, batch_size=batch).fit(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.5 * batch * X.shape[1] * 8
    assert (X != before).nnz == 0
    dense = randla.IncrementalPCA(5, batch_size=batch).fit(X.toarray())
    np.testing.assert_allclose(ours.singular_values_, dense.singular_values_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, np.var(X.toarray(), axis=0), rtol=1e-12)
