"""randla.attention: the implicit attention operator against dense softmax, and the
Nystrom and random-feature approximations against exact attention and the optimum."""

from __future__ import annotations

import math

import array_api_compat.numpy as numpy_namespace
import numpy as np
import pytest
import torch
from scipy.special import softmax

import randla
from randla.attention import _causal_linear_attention


def dense_attention(Q, K, scale=None, causal=False):
    """softmax(s Q K^T) with the causal mask, in double."""
    Q, K = np.asarray(Q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    S = Q @ K.T
    S = (S - S.max(axis=1, keepdims=True)) * (1 / math.sqrt(Q.shape[1]) if scale is None else scale)
    if causal:
        offset = K.shape[0] - Q.shape[0]
        S[np.arange(K.shape[0])[None, :] > np.arange(Q.shape[0])[:, None] + offset] = -np.inf
    return softmax(S, axis=1)


def qkv(n_q=120, n_k=150, d=8, d_v=5, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_q, d)) * scale, rng.standard_normal((n_k, d)) * scale, rng.standard_normal((n_k, d_v))


def topic_tokens(n=1200, topics=6, d=16, seed=0):
    """Tokens of a text that treats a few topics in turn: attention of low numerical rank."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, d)) * 2
    X = centres[np.repeat(np.arange(topics), n // topics)] + 0.3 * rng.standard_normal((n, d))
    return X, rng.standard_normal((n, 8))


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("causal", [False, True])
def test_operator_products_equal_dense_attention(backend, dtype, causal):
    Q, K, V = qkv()
    P = dense_attention(Q, K, causal=causal)
    wrap = (lambda x: torch.from_numpy(x.astype(dtype))) if backend == "torch" else (lambda x: x.astype(dtype))
    # A 20 KiB limit forces blocks of a few queries.
    op = randla.attention_operator(wrap(Q), wrap(K), causal=causal, memory_limit=20_000)
    assert op._rows_per_block() < Q.shape[0] and op.shape == P.shape
    Y = np.random.default_rng(1).standard_normal((Q.shape[0], 3))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(np.asarray(op.matmat(wrap(V))), P @ V, atol=tol)
    np.testing.assert_allclose(np.asarray(op.rmatmat(wrap(Y))), P.T @ Y, atol=tol)
    assert op.norm() == pytest.approx(np.linalg.norm(P), rel=10 * tol)
    if causal:  # the newest query sees every key, the first only the keys before the extra ones
        assert np.all(P[-1] > 0) and np.all(P[0, K.shape[0] - Q.shape[0] + 1 :] == 0)


def test_operator_takes_any_score_scale_without_overflow():
    Q, K, V = qkv(scale=1.0)
    for scale in [1e-8, 1e3, 1e300]:
        out = randla.attention_operator(Q, K, scale=scale).matmat(V)
        np.testing.assert_allclose(out, dense_attention(Q, K, scale=scale) @ V, atol=1e-10)


def test_svd_of_the_attention_matrix_is_near_optimal():
    X, _ = topic_tokens()
    op = randla.attention_operator(X, X)
    P = dense_attention(X, X)
    s = np.linalg.svd(P, compute_uv=False)
    for k in [6, 20]:
        U, S, Vh = randla.svd(op, k, rng=0)
        optimum = math.sqrt(np.sum(s[k:] ** 2))
        assert np.linalg.norm(P - (U * S) @ Vh) <= 1.05 * optimum
        np.testing.assert_allclose(S[:6], s[:6], rtol=1e-8)  # the topics' values, behind a wide gap
    # Six topics: six singular values carry almost all of the matrix.
    assert np.sum(s[6:] ** 2) < 0.01 * np.sum(s**2)


def test_half_precision_attention_comes_back_in_it():
    Q, K, _ = qkv(60, 60)
    op = randla.attention_operator(torch.from_numpy(Q).bfloat16(), torch.from_numpy(K).bfloat16())
    r = randla.svd(op, 5, rng=0)
    assert op.dtype == torch.float32 and r.U.dtype == torch.bfloat16
    exact = np.linalg.svd(dense_attention(torch.from_numpy(Q).bfloat16().float(), torch.from_numpy(K).bfloat16().float()),
                          compute_uv=False)
    np.testing.assert_allclose(r.S.float().numpy(), exact[:5], rtol=2e-2)
    # V of the model's own precision, or any other, multiplies in P's float32.
    P = dense_attention(torch.from_numpy(Q).bfloat16().float(), torch.from_numpy(K).bfloat16().float())
    for V in (torch.from_numpy(Q).bfloat16(), torch.from_numpy(Q)):
        for product, M in ((op.matmat, P), (op.rmatmat, P.T)):
            out = product(V)
            assert out.dtype == torch.float32
            np.testing.assert_allclose(out.numpy(), M @ V.float().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["segment_means", "uniform"])
def test_nystrom_attention_with_every_token_as_a_landmark_is_exact(method):
    Q, K, V = qkv(80, 80, scale=0.7)
    out = randla.nystrom_attention(Q, K, V, 80, method=method, rcond=1e-13, rng=0)
    np.testing.assert_allclose(out, dense_attention(Q, K) @ V, atol=1e-8)


def test_nystrom_attention_on_structured_text_is_near_the_optimum():
    X, V = topic_tokens(topics=6)
    P = dense_attention(X, X)
    exact = P @ V
    U, s, Vh = np.linalg.svd(P)
    best_rank_6 = relative((U[:, :6] * s[:6]) @ (Vh[:6] @ V), exact)  # the best rank-6 P, applied to V
    # Landmarks on every topic (contiguous segments do it with two per topic,
    # uniform draws with eight) come within 25% of the best rank-6 error.
    for m, method in [(12, "segment_means"), (48, "segment_means"), (48, "uniform")]:
        error = relative(randla.nystrom_attention(X, X, V, m, method=method, rng=0), exact)
        assert error <= 1.25 * best_rank_6, (m, method, error, best_rank_6)


def test_batched_heads_broadcast_and_match_one_head_at_a_time():
    rng = np.random.default_rng(0)
    Q, K = rng.standard_normal((2, 3, 200, 8)) * 0.5, rng.standard_normal((1, 3, 200, 8)) * 0.5
    V = rng.standard_normal((200, 4))
    for approx in [lambda q, k, v: randla.nystrom_attention(q, k, v, 16),
                   lambda q, k, v: randla.performer_attention(q, k, v, 64, rng=0),
                   lambda q, k, v: randla.performer_attention(q, k, v, 64, causal=True, rng=0)]:
        out = approx(Q, K, V)
        assert out.shape == (2, 3, 200, 4)
        for b in range(2):
            for h in range(3):
                np.testing.assert_allclose(out[b, h], approx(Q[b, h], K[0, h], V), atol=1e-12)
        as_torch = approx(*(torch.from_numpy(x) for x in (Q, K, V)))
        np.testing.assert_allclose(as_torch.numpy(), out, atol=1e-10)


def _padded(X, V, lengths, seed=1):
    """Sequences of X's first ``lengths`` tokens, right-padded with noise, stacked as (batch, heads=2, n, d), and their mask."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    mask = np.arange(n)[None, :] < np.array(lengths)[:, None]
    Xs = np.where(mask[:, :, None], X, 5 * rng.standard_normal((len(lengths), n, X.shape[1])))
    Vs = np.where(mask[:, :, None], V, rng.standard_normal((len(lengths), n, V.shape[1])))
    return np.stack([Xs, 0.8 * Xs], axis=1), np.stack([Vs, Vs], axis=1), mask[:, None, :]


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("approx", [
    lambda q, k, v, **kw: randla.nystrom_attention(q, k, v, 24, **kw),
    lambda q, k, v, **kw: randla.performer_attention(q, k, v, 64, rng=0, **kw),
    lambda q, k, v, **kw: randla.performer_attention(q, k, v, 64, causal=True, rng=0, **kw),
], ids=["nystrom", "performer", "performer-causal"])
def test_padding_takes_no_part(library, approx):
    # Padded keys once entered the landmarks and the sums: a half-padded sequence's error
    # on its real tokens went from 0.23 to 0.65. Now it gets what its unpadded copy gets.
    X, V = topic_tokens(n=300, topics=6)
    lengths = [300, 230, 151]
    Xs, Vs, mask = _padded(0.4 * X, V, lengths)
    convert = torch.from_numpy if library == "torch" else np.asarray
    out = np.asarray(approx(*(convert(a) for a in (Xs, Xs, Vs)), key_mask=convert(mask)))
    assert np.all(np.isfinite(out))
    for b, length in enumerate(lengths):
        for h in range(2):
            alone = approx(Xs[b, h, :length], Xs[b, h, :length], Vs[b, h, :length])
            np.testing.assert_allclose(out[b, h, :length], alone, atol=1e-10)


def test_padding_masks_are_checked():
    X, V = topic_tokens(n=100, topics=4)
    mask = np.ones(100, bool)
    mask[10:] = False
    with pytest.raises(ValueError, match="at least 16 real key"):
        randla.nystrom_attention(X, X, V, 16, key_mask=mask)
    with pytest.raises(ValueError, match=r"`key_mask` must have shape \(..., n_keys\) with n_keys = 100"):
        randla.performer_attention(X, X, V, key_mask=mask[:50])
    with pytest.raises(ValueError, match="work with method='segment_means'"):
        randla.nystrom_attention(X, X, V, 8, key_mask=mask, method="uniform")
    with pytest.raises(TypeError, match="`key_mask` must be an array of the keys' library"):
        randla.performer_attention(X, X, V, key_mask=torch.from_numpy(mask))
    # Left padding, causal: a query that sees padding alone gets 0, not 0 / 0.
    out = randla.performer_attention(X, X, V, 32, key_mask=mask[::-1].copy(), causal=True, rng=0)
    assert np.all(np.isfinite(out)) and np.all(out[:90] == 0)


def test_performer_error_falls_like_one_over_root_features():
    Q, K, V = qkv(300, 300, scale=0.3)
    exact = dense_attention(Q, K) @ V
    mean_error = {m: np.mean([relative(randla.performer_attention(Q, K, V, m, rng=seed), exact) for seed in range(8)])
                  for m in [64, 4096]}
    # 64 times the features: 1/8 of the error expected; allow 1/4.
    assert mean_error[4096] <= mean_error[64] / 4 and mean_error[4096] < 0.01


@pytest.mark.parametrize("n_q, n_k", [(600, 600), (530, 700), (1, 40)])
def test_causal_prefix_sums_equal_the_masked_product(n_q, n_k):
    rng = np.random.default_rng(0)
    phi_q, phi_k = rng.random((n_q, 12)), rng.random((n_k, 12))
    V = rng.standard_normal((n_k, 3))
    mask = np.arange(n_k)[None, :] <= np.arange(n_q)[:, None] + (n_k - n_q)
    weights = (phi_q @ phi_k.T) * mask
    expected = (weights @ V) / weights.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_causal_linear_attention(numpy_namespace, phi_q, np.log(phi_k), V), expected,
                               rtol=1e-12, atol=1e-15)


def test_causal_performer_tends_to_causal_attention_and_agrees_on_the_last_query():
    Q, K, V = qkv(300, 340, scale=0.3)
    V = V + 1.0
    exact = dense_attention(Q, K, causal=True) @ V
    causal = randla.performer_attention(Q, K, V, 8192, causal=True, rng=0)
    assert relative(causal, exact) < 0.02
    full = randla.performer_attention(Q, K, V, 8192, rng=0)
    np.testing.assert_allclose(causal[-1], full[-1], rtol=1e-10)  # the last query sees every key


def test_inputs_are_not_modified():
    Q, K, V = qkv()
    copies = [x.copy() for x in (Q, K, V)]
    randla.nystrom_attention(Q, K, V, 10)
    randla.performer_attention(Q, K, V, 10, causal=True, rng=0)
    randla.svd(randla.attention_operator(Q, K, causal=True), 3, rng=0)
    for before, after in zip(copies, (Q, K, V)):
        np.testing.assert_array_equal(before, after)


def test_bad_input():
    Q, K, V = qkv()
    with pytest.raises(ValueError, match="same width d"):
        randla.attention_operator(Q, K[:, :3])
    with pytest.raises(ValueError, match="a row per key"):
        randla.nystrom_attention(Q, K, V[:-1])
    with pytest.raises(ValueError, match="must broadcast"):
        randla.performer_attention(np.stack([Q, Q]), np.stack([K] * 3), V)
    with pytest.raises(ValueError, match="2-D"):
        randla.attention_operator(Q[None], K[None])
    with pytest.raises(ValueError, match="NaN or Inf"):
        randla.nystrom_attention(Q, K * np.nan, V)
    with pytest.raises(TypeError, match="real numbers"):
        randla.attention_operator(Q * 1j, K)
    with pytest.raises(TypeError, match="NumPy array or torch tensor"):
        randla.attention_operator(Q.tolist(), K)
    with pytest.raises(TypeError, match="one array library"):
        randla.nystrom_attention(Q, torch.from_numpy(K), V)
    with pytest.raises(ValueError, match="at least as many keys"):
        randla.attention_operator(K, Q, causal=True)
    with pytest.raises(ValueError, match="at least as many keys"):
        randla.performer_attention(K, Q, Q, causal=True)
    with pytest.raises(ValueError, match="landmarks"):
        randla.nystrom_attention(Q, K, V, Q.shape[0] + 1)
    with pytest.raises(ValueError, match="scale"):
        randla.attention_operator(Q, K, scale=-1.0)
    with pytest.raises(ValueError, match="rcond"):
        randla.nystrom_attention(Q, K, V, rcond=2.0)
    with pytest.raises(ValueError, match="method"):
        randla.nystrom_attention(Q, K, V, method="kmeans")
    with pytest.raises(ValueError, match="n_features"):
        randla.performer_attention(Q, K, V, 0)
    with pytest.raises(ValueError, match="must not be empty"):
        randla.attention_operator(Q[:0], K)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_complex_blocks_are_multiplied_not_cast_to_real(library):
    """P is real: a complex V, a complex Gaussian sketch and a complex shift of P
    are multiplied as P Re X + i P Im X (they were cast to real, dropping Im X)."""
    import array_api_compat.torch as torch_namespace

    from randla.sketch import draw_sketch

    Q, K, _ = qkv(80, 80)
    Pd = dense_attention(Q, K)
    rng = np.random.default_rng(1)
    V = rng.standard_normal((80, 4)) + 1j * rng.standard_normal((80, 4))
    convert = torch.from_numpy if library == "torch" else np.asarray
    P = randla.attention_operator(convert(Q), convert(K))
    out = np.asarray(P.matmat(convert(V)))
    assert relative(out, Pd @ V) < 1e-14
    assert relative(np.asarray(P.rmatmat(convert(V))), Pd.T @ V) < 1e-14
    xp = torch_namespace if library == "torch" else numpy_namespace
    dtype = torch.complex128 if library == "torch" else np.complex128
    omega = draw_sketch("gaussian", 80, 5, xp=xp, dtype=dtype, rng=0)
    assert relative(np.asarray(omega.apply(P)), Pd @ np.asarray(omega.dense())) < 1e-14
    shifted = Pd + 0.5j * np.eye(80)
    exact = np.linalg.norm(shifted, 2)
    estimate = randla.spectral_norm(randla.Shifted(P, 0.5j), rng=0).estimate  # a lower bound: it was 1.228 > 1.147
    assert exact * (1 - 1e-6) <= estimate <= exact * (1 + 1e-12)


def test_meta_tensors_are_refused():
    """Queries on torch's 'meta' device hold no values: a clear TypeError."""
    Q = torch.empty(20, 8, device="meta")
    with pytest.raises(TypeError, match="`Q` is a torch tensor on the 'meta' device"):
        randla.attention_operator(Q, Q)


def test_additive_and_non_binary_masks_are_refused():
    """SDPA's float attn_mask (0 keep, -inf drop) read as bool would keep exactly the padding."""
    Q, K, V = (torch.randn(1, 1, 50, 8, dtype=torch.float64) * 0.3 for _ in range(3))
    keep = torch.zeros(1, 1, 50, dtype=torch.bool)
    keep[..., :40] = True
    additive = torch.zeros(1, 1, 50, dtype=torch.float64).masked_fill(~keep, float("-inf"))
    for approx in (randla.nystrom_attention, randla.performer_attention):
        with pytest.raises(ValueError, match="additive mask"):
            approx(Q, K, V, 8, key_mask=additive)
    # 0/1 masks of any dtype (a tokenizer's attention_mask) are what a bool mask is.
    as_int = randla.nystrom_attention(Q, K, V, 8, key_mask=keep.long())
    assert torch.equal(as_int, randla.nystrom_attention(Q, K, V, 8, key_mask=keep))


def test_masks_may_not_add_batch_axes():
    """SDPA's (B, 1, 1, n) layout must not cross every batch's mask with every batch's keys."""
    Q, K, V = torch.randn(3, 2, 3, 40, 8).unbind(0)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    for approx in (randla.nystrom_attention, randla.performer_attention):
        with pytest.raises(ValueError, match=r"without adding axes.*mask\[:, None, :\]"):
            approx(Q, K, V, 8, key_mask=mask[:, None, None, :])
        assert approx(Q, K, V, 8, key_mask=mask[:, None, :]).shape == (2, 3, 40, 8)


def test_query_mask_for_cross_attention_of_equal_padded_lengths():
    """Keys padded to the queries' length: the queries' own mask keeps the padded call equal to the unpadded one."""
    rng = np.random.default_rng(0)
    n, d, m = 100, 16, 10
    seq = (rng.standard_normal((4, d)) * 1.5)[np.arange(n) // 25]
    Q = seq + 0.2 * rng.standard_normal((n, d))
    K = seq + 0.2 * rng.standard_normal((n, d))
    V = rng.standard_normal((n, d))
    mask = np.arange(n) < 60  # 60 real keys; all 100 queries real
    padded = randla.nystrom_attention(Q, K, V, m, key_mask=mask, query_mask=np.ones(n, bool))
    unpadded = randla.nystrom_attention(Q, K[:60], V[:60], m)
    np.testing.assert_allclose(padded, unpadded, atol=1e-12)
    # The default, for self-attention, masks the query landmarks with the keys' padding.
    default = randla.nystrom_attention(Q, K, V, m, key_mask=mask)
    np.testing.assert_array_equal(default, randla.nystrom_attention(Q, K, V, m, key_mask=mask, query_mask=mask))


def test_causal_performer_is_not_emptied_by_a_large_later_key():
    """float32: a query's visible keys must not underflow under a factor taken over keys it cannot see."""
    torch.manual_seed(0)
    n, d = 256, 64
    Q, K, V = torch.randn(3, 1, 1, n, d).unbind(0)
    K[..., 0, :] *= 6  # a large first key (a beginning-of-sequence token)
    out = randla.performer_attention(Q, K, V, 256, causal=True, rng=0)
    double = randla.performer_attention(Q.double(), K.double(), V.double(), 256, causal=True, rng=0)
    torch.testing.assert_close(out[..., 0, :], V[..., 0, :], rtol=1e-5, atol=1e-5)  # query 0 sees key 0 alone
    assert torch.all(torch.isfinite(out))
    assert float((out.double() - double).norm() / double.norm()) < 1e-4
    K2 = K.clone()
    K2[..., 0, :] /= 6
    K2[..., 5, :] *= 6  # a large key after the first queries of a block
    out = randla.performer_attention(Q, K2, V, 256, causal=True, rng=0)
    double = randla.performer_attention(Q.double(), K2.double(), V.double(), 256, causal=True, rng=0)
    assert float((out.double() - double).norm() / double.norm()) < 1e-4
