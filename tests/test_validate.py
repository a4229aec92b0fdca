"""Bad input: every case of DESIGN's Errors section, one by one, at every
public entry point. Each message names the parameter and what was received."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import aslinearoperator

import randla
from randla._validate import (
    check_choice,
    check_int,
    check_power_iters,
    check_rank,
    check_rng,
    check_tol,
)
from randla.testing import planted, psd

A = planted(30, 20, rng=0).A  # 30 x 20: rank must be in [1, 20]
P = psd(20, rng=0)  # 20 x 20 PSD


def call(name, M, *args, **kwargs):
    return getattr(randla, name)(M, *args, **kwargs)


ALL = ["svd", "qb", "eigh", "nystrom"]


def operand(name):
    return P if name in ("eigh", "nystrom") else A


# -- rank -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("rank", [0, -1, -20])
def test_rank_below_one(name, rank):
    with pytest.raises(ValueError, match=rf"`rank` must be an int in \[1, 20\].*got {rank}\."):
        call(name, operand(name), rank)


@pytest.mark.parametrize("name", ALL)
def test_rank_above_min_dimension(name):
    with pytest.raises(ValueError, match=r"`rank` must be an int in \[1, 20\] .*got 21\."):
        call(name, operand(name), 21)


def test_rank_message_names_the_shape():
    with pytest.raises(ValueError, match=r"smaller dimension of the 30x20 matrix\); got 25\."):
        randla.svd(A, 25)
    with pytest.raises(ValueError, match=r"\[1, 20\].*20x30.*got 25\."):
        randla.svd(A.T, 25)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("rank", [2.0, 2.5, "3", True, False, np.float64(3.0), [3]],
                         ids=["float", "fraction", "str", "True", "False", "npfloat", "list"])
def test_rank_not_an_int(name, rank):
    with pytest.raises(ValueError, match=r"`rank` must be an int.*got " + re.escape(repr(rank))):
        call(name, operand(name), rank)


@pytest.mark.parametrize("rank", [np.int64(3), np.int32(3), np.uint8(3)])
def test_numpy_integer_rank_accepted(rank):
    assert randla.svd(A, rank, rng=0).rank == 3


@pytest.mark.parametrize("name", ["svd", "qb", "nystrom"])
def test_neither_rank_nor_tol(name):
    with pytest.raises(ValueError, match=r"`rank`.*`tol`"):
        call(name, operand(name))


@pytest.mark.parametrize("name", ["eigh"])
def test_rank_is_required(name):
    with pytest.raises(TypeError):
        call(name, P)


# -- tol --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["svd", "qb"])
@pytest.mark.parametrize(
    "tol", [0, 0.0, -0.1, 1, 1.0, 1.5, float("nan"), float("inf"), "0.1", True, [0.1]],
    ids=["0", "0.0", "negative", "1", "1.0", "1.5", "nan", "inf", "str", "True", "list"],
)
def test_tol_outside_open_unit_interval(name, tol):
    with pytest.raises(ValueError, match=r"`tol` must be a float in \(0, 1\).*got " + re.escape(repr(tol)) + r"\."):
        call(name, A, tol=tol)


@pytest.mark.parametrize("name", ["svd", "qb"])
def test_tol_with_rank_still_checked(name):
    with pytest.raises(ValueError, match="`tol`.*got 2"):
        call(name, A, 5, tol=2)


def test_tol_with_block_krylov():
    with pytest.raises(ValueError, match="`tol` works with method='rsi' or 'rsvd'"):
        randla.svd(A, tol=0.1, method="block_krylov")


@pytest.mark.parametrize("tol", [1e-12, 0.999999, np.float32(0.5)])
def test_tol_inside_interval_accepted(tol):
    if tol < 1e-8:  # accepted, with a word on what float64 resolves
        with pytest.warns(UserWarning, match="below what float64 arithmetic resolves"):
            assert randla.svd(A, tol=tol, rng=0).converged
    else:
        assert randla.svd(A, tol=tol, rng=0).converged


# -- NaN / Inf / empty / not a matrix --------------------------------------------


def _with(value, M):
    M = M.copy()
    M[3, 4] = value
    M[4, 3] = value  # keep it symmetric for eigh / nystrom
    return M


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "container",
    [lambda M: M, sp.csr_array, torch.as_tensor, aslinearoperator],
    ids=["numpy", "csr", "torch", "linear_operator"],
)
def test_nan_and_inf_refused(name, value, container):
    M = container(_with(value, operand(name)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, M, 3, rng=0)


@pytest.mark.parametrize("name", ["svd", "qb"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("method", ["rsi", "rsvd"])
def test_nan_and_inf_refused_in_tol_mode(name, value, method):
    kwargs = {"method": method} if name == "svd" else {"power_iters": 0 if method == "rsvd" else 2}
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, _with(value, A), tol=0.1, rng=0, **kwargs)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("method", ["rsi", "rsvd", "block_krylov"])
@pytest.mark.parametrize("wide", [False, True])
def test_nan_and_inf_refused_every_method(value, method, wide):
    M = _with(value, A)
    with pytest.raises(ValueError, match="NaN or Inf"):
        randla.svd(M.T if wide else M, 3, method=method, rng=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("sketch", ["countsketch", "sparse_sign", "centered"])
def test_inf_refused_without_a_numpy_warning_first(name, sketch):
    """Inf meets the zeros of a sparse sketch (Inf * 0) or the mean that
    Centered subtracts (Inf - Inf): the NaN that makes is the ValueError's
    to report; NumPy's RuntimeWarning came first (an error under -W error)."""
    M = _with(np.inf, operand(name))
    kwargs = {"sketch": sketch}
    if sketch == "centered":
        M, kwargs = randla.Centered(M, axis=0), {}
    with pytest.raises(ValueError, match="NaN or Inf"):
        call(name, M, 3, rng=0, **kwargs)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "empty", [np.zeros((0, 5)), np.zeros((5, 0)), sp.csr_array((0, 0)), torch.zeros((0, 3))],
    ids=["no_rows", "no_cols", "sparse", "torch"],
)
def test_empty_matrix(name, empty):
    with pytest.raises(ValueError, match=r"at least one row and one column; got shape \(\d+, \d+\)"):
        call(name, empty, 1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad, received",
    [
        ([[1.0, 0.0], [0.0, 1.0]], "list"),
        ("matrix", "str"),
        (None, "NoneType"),
        (5, "int"),
        ({"A": A}, "dict"),
        (np.array([[object(), object()], [object(), object()]]), "dtype object"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype <U1"),
    ],
    ids=["list", "str", "None", "int", "dict", "object_array", "str_array"],
)
def test_not_a_matrix(name, bad, received):
    with pytest.raises(TypeError, match=received):
        call(name, bad, 1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [np.ones(4), np.ones((2, 2, 2)), torch.ones(4)], ids=["1d", "3d", "torch_1d"])
def test_not_two_dimensional(name, bad):
    with pytest.raises(ValueError, match=r"2-D matrix; got \d dimensions"):
        call(name, bad, 1)


@pytest.mark.parametrize("name", ["eigh", "nystrom"])
def test_not_square(name):
    with pytest.raises(ValueError, match=r"needs a square matrix; got shape \(30, 20\)"):
        call(name, A, 3)


@pytest.mark.parametrize("name", ["eigh", "nystrom"])
def test_not_hermitian(name):
    with pytest.raises(ValueError, match="must be Hermitian"):
        call(name, planted(20, 20, rng=0).A, 3, rng=0)


# -- choices ----------------------------------------------------------------------


def test_unknown_method():
    with pytest.raises(ValueError, match=r"`method` must be one of 'rsi', 'rsvd', 'block_krylov'; got 'svd'\."):
        randla.svd(A, 3, method="svd")
    with pytest.raises(ValueError, match=r"`method` must be one of .*got None\."):
        randla.svd(A, 3, method=None)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("sketch", ["hadamard", "Gaussian", 3])
def test_unknown_sketch(name, sketch):
    with pytest.raises(ValueError, match=rf"`sketch` must be one of 'gaussian', .*got {re.escape(repr(sketch))}\."):
        call(name, operand(name), 3, sketch=sketch)


@pytest.mark.parametrize("name", ["svd", "qb", "eigh"])
@pytest.mark.parametrize("normalizer", ["householder", "QR", None])
def test_unknown_normalizer(name, normalizer):
    with pytest.raises(ValueError, match=rf"`normalizer` must be one of 'auto', .*got {re.escape(repr(normalizer))}\."):
        call(name, operand(name), 3, normalizer=normalizer)


# -- power_iters, oversample, block_size ------------------------------------------


@pytest.mark.parametrize("name", ["svd", "qb", "eigh"])
@pytest.mark.parametrize("power_iters", [-1, 1.5, "2", "AUTO", True, None])
def test_bad_power_iters(name, power_iters):
    with pytest.raises(ValueError, match=rf"`power_iters` must be 'auto' or an int >= 0; got {re.escape(repr(power_iters))}\."):
        call(name, operand(name), 3, power_iters=power_iters)


@pytest.mark.parametrize("power_iters", [-1, "auto", 1.0])
def test_bad_power_iters_nystrom(power_iters):
    with pytest.raises(ValueError, match=rf"`power_iters` must be an int >= 0; got {re.escape(repr(power_iters))}\."):
        randla.nystrom(P, 3, power_iters=power_iters)


@pytest.mark.parametrize("power_iters", [1, 3])
def test_rsvd_refuses_power_iters(power_iters):
    with pytest.raises(ValueError, match=rf"method='rsvd' makes no power iterations; got power_iters={power_iters}"):
        randla.svd(A, 3, method="rsvd", power_iters=power_iters)


@pytest.mark.parametrize("power_iters", [0, "auto"])
def test_rsvd_accepts_no_power_iters(power_iters):
    assert randla.svd(A, 3, method="rsvd", power_iters=power_iters, rng=0).power_iters == 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("oversample", [-1, 2.0, True])
def test_bad_oversample(name, oversample):
    with pytest.raises(ValueError, match=rf"`oversample` must be an int >= 0; got {re.escape(repr(oversample))}\."):
        call(name, operand(name), 3, oversample=oversample)


@pytest.mark.parametrize("name", ["svd", "qb"])
@pytest.mark.parametrize("block_size", [0, -3, 2.5])
def test_bad_block_size(name, block_size):
    with pytest.raises(ValueError, match=rf"`block_size` must be an int >= 1; got {re.escape(repr(block_size))}\."):
        call(name, A, tol=0.1, block_size=block_size)


# -- rng --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "rng, received",
    [("seed", "str"), (1.5, "float"), (torch.Generator(), "Generator"), (object(), "object")],
    ids=["str", "float", "torch_generator", "object"],
)
def test_bad_rng_type(name, rng, received):
    with pytest.raises(TypeError, match=rf"`rng` must be None, an int, .*got {received}\."):
        call(name, operand(name), 3, rng=rng)


def test_torch_generator_message_says_what_to_do():
    with pytest.raises(TypeError, match="pass an int seed instead"):
        randla.svd(A, 3, rng=torch.Generator())


@pytest.mark.parametrize(
    "call_",
    [
        lambda rng: randla.estimate_error(A, randla.svd(A, 3, rng=0), rng=rng),
        lambda rng: randla.posterior_error_bound(A, randla.qb(A, 3, rng=0).Q, rng=rng),
    ],
    ids=["estimate_error", "posterior_error_bound"],
)
def test_bad_rng_in_estimators(call_):
    with pytest.raises(TypeError, match="`rng` must be"):
        call_("seed")


# -- nothing is modified, even on error -------------------------------------------


def test_input_unchanged_after_error():
    M = _with(np.nan, A)
    before = M.copy()
    with pytest.raises(ValueError):
        randla.svd(M, 3)
    assert np.array_equal(M, before, equal_nan=True)


# -- the helpers themselves -------------------------------------------------------


def test_check_rng():
    gen = np.random.default_rng(0)
    assert check_rng(gen) is gen
    assert isinstance(check_rng(None), np.random.Generator)
    assert check_rng(3).integers(0, 2**32) == np.random.default_rng(3).integers(0, 2**32)
    with pytest.raises(TypeError, match="got str"):
        check_rng("x")


def test_check_int():
    assert check_int("n", 3, 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    assert check_int("n", 5, 1, 5) == 5
    with pytest.raises(ValueError, match=r"`n` must be an int \[1, 5\]; got 6\."):
        check_int("n", 6, 1, 5)
    with pytest.raises(ValueError, match=r"`n` must be an int >= 1; got True\."):
        check_int("n", True, 1)


def test_check_rank():
    assert check_rank(3, (10, 4)) == 3
    with pytest.raises(ValueError, match=r"\[1, 4\].*10x4.*got 5\."):
        check_rank(5, (10, 4))


def test_check_tol():
    assert check_tol(0.25) == 0.25 and type(check_tol(np.float32(0.5))) is float
    with pytest.raises(ValueError, match=r"got 0\."):
        check_tol(0)


def test_check_choice_and_power_iters():
    assert check_choice("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"`kind` must be one of 'a', 'b'; got 'c'\."):
        check_choice("kind", "c", ("a", "b"))
    assert check_power_iters("auto") == "auto" and check_power_iters(np.int64(2)) == 2
    with pytest.raises(ValueError, match=r"got -2\."):
        check_power_iters(-2)


@pytest.mark.parametrize("name", ALL)
def test_negative_seed(name):
    with pytest.raises(ValueError, match=r"`rng` seed must be >= 0; got -1\."):
        call(name, operand(name), 3, rng=-1)
