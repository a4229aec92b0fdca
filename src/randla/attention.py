"""Softmax attention without its n x n matrix: an implicit operator, and Nystrom
and random-feature approximations.

Attention is P V with P = softmax(s Q K^T) row by row, s = 1/sqrt(d). P has
a row per query and a column per key, so at n tokens it costs O(n^2 d) time
and, formed, O(n^2) memory. :func:`attention_operator` makes P an
:class:`~randla.Operator` whose products are computed a block of queries at a
time, so :func:`randla.svd` and :func:`randla.spectral_norm` can study the
attention matrices of long sequences (their numerical rank is what the
approximations bet on), and ``op.matmat(V)`` is exact attention within a
memory bound. :func:`nystrom_attention` (Nystromformer) and
:func:`performer_attention` (FAVOR+) approximate P V in time linear in n.

Q, K and V are NumPy arrays or torch tensors on any device, with any leading
batch and head axes for the approximations: (..., n_queries, d),
(..., n_keys, d) and (..., n_keys, d_v).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from ._validate import check_choice, check_int, check_rng
from .backend import device_of
from .operators import Operator
from .operators.adapters import check_not_meta
from .operators.base import _adjoint_product, _real_product, _work_dtype

__all__ = ["AttentionOperator", "attention_operator", "nystrom_attention", "performer_attention"]

DEFAULT_MEMORY_LIMIT = 256 * 2**20
_TEMPORARIES = 3  # scores, their mask and the probabilities alive at once
_CAUSAL_CHUNK = 256  # queries per step of causal random-feature attention


def _check_inputs(Q, K, V=None, *, batched: bool = True):
    """(xp, Q, K, V) validated and in one floating dtype, with clear errors."""
    named = [("Q", Q), ("K", K)] + ([("V", V)] if V is not None else [])
    for name, x in named:
        if not is_array_api_obj(x) or isinstance(x, np.matrix):
            raise TypeError(f"`{name}` must be a NumPy array or torch tensor; got {type(x).__name__}.")
        check_not_meta(x, f"`{name}`")
    try:
        xp = array_namespace(*(x for _, x in named))
    except TypeError:
        raise TypeError("`Q`, `K` and `V` must come from one array library (all NumPy or all torch).") from None
    for name, x in named:
        if x.ndim < 2 or (not batched and x.ndim != 2):
            want = "2-D (tokens, features)" if not batched else "at least 2-D (..., tokens, features)"
            raise ValueError(f"`{name}` must be {want}; got shape {tuple(x.shape)}.")
        if 0 in x.shape:
            raise ValueError(f"`{name}` must not be empty; got shape {tuple(x.shape)}.")
        if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"`{name}` must hold real numbers; got dtype {x.dtype}.")
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"queries and keys must have the same width d; got Q {tuple(Q.shape)}, K {tuple(K.shape)}.")
    if V is not None and V.shape[-2] != K.shape[-2]:
        raise ValueError(f"`V` must have a row per key ({K.shape[-2]}); got shape {tuple(V.shape)}.")
    try:
        np.broadcast_shapes(*(tuple(x.shape[:-2]) for _, x in named))
    except ValueError:
        leading = ", ".join(f"{name} {tuple(x.shape[:-2])}" for name, x in named)
        raise ValueError(f"the leading (batch, head) axes of Q, K and V must broadcast; got {leading}.") from None
    dtype = _work_dtype(xp, xp.result_type(*(x.dtype for _, x in named)))
    out = [x if x.dtype == dtype else xp.astype(x, dtype) for _, x in named]
    for (name, _), x in zip(named, out):
        if not bool(xp.all(xp.isfinite(x))):
            raise ValueError(f"`{name}` contains NaN or Inf.")
    return xp, *out, *([None] if V is None else [])


def _check_mask(xp, mask, X, batch, landmarks: int = 1, name: str = "key_mask"):
    """A mask of X's tokens as a bool array, True where a token is real; each sequence keeps at
    least ``landmarks``. Its leading axes broadcast to ``batch``, the inputs' own, without adding any."""
    if mask is None:
        return None
    what = "key" if name == "key_mask" else "query"
    if not is_array_api_obj(mask) or array_namespace(mask) is not xp:
        raise TypeError(f"`{name}` must be an array of the {what}s' library; got {type(mask).__name__}.")
    if mask.ndim < 1 or int(mask.shape[-1]) != int(X.shape[-2]):
        raise ValueError(f"`{name}` must have shape (..., n_{what}s) with n_{what}s = {X.shape[-2]} (True for a real "
                         f"{what}, as a tokenizer's attention_mask); got {tuple(mask.shape)}.")
    leading = tuple(mask.shape[:-1])
    try:
        fits = np.broadcast_shapes(leading, tuple(batch)) == tuple(batch)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"the leading axes of `{name}` {leading} must broadcast to the inputs' {tuple(batch)} "
                         "without adding axes: for inputs of shape (batch, heads, n, d) pass a (batch, n) "
                         "mask as mask[:, None, :].")
    if mask.dtype != xp.bool:
        # An additive mask (0 to keep, -inf or a large negative number to drop, as SDPA's
        # float attn_mask) read as bool would keep exactly the padding.
        if not bool(xp.all((mask == 0) | (mask == 1))):
            raise ValueError(f"`{name}` must be a bool mask, True for a real {what}, or hold only 0 and 1; got "
                             "other values. For an additive mask (0 keep, -inf drop) pass `mask == 0`.")
        mask = xp.astype(mask, xp.bool)
    fewest = int(xp.min(xp.sum(xp.astype(mask, xp.int64), axis=-1)))
    if fewest < landmarks:
        raise ValueError(f"every sequence needs at least {landmarks} real {what}(s) in `{name}`; one has {fewest}.")
    return mask


def _leading(*arrays) -> tuple:
    """The broadcast (batch, head) axes of the inputs."""
    return np.broadcast_shapes(*(tuple(x.shape[:-2]) for x in arrays))


def _check_scale(scale, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (0 < scale < math.inf):
        raise ValueError(f"`scale` must be a positive finite number (default 1/sqrt(d)); got {scale!r}.")
    return float(scale)


def _softmax(xp, S, scale: float):
    """Row-wise softmax of scale * S, shifted by the row maximum before scaling, so
    that no scale overflows."""
    E = xp.exp((S - xp.max(S, axis=-1, keepdims=True)) * scale)
    return E / xp.sum(E, axis=-1, keepdims=True)


class AttentionOperator(Operator):
    """The attention matrix P = softmax(s Q K^T), (n_queries, n_keys), implicit.

    Create it with :func:`attention_operator`. ``matmat(V)`` is exact
    attention P V, in P's dtype (float32 for half-precision Q and K, whatever
    a real V's; its complex counterpart for a complex V); ``rmatmat(Y)`` is
    P^T Y; ``rows(start, stop)`` evaluates a block of rows of P. Each is computed a block of queries at a time,
    within ``memory_limit`` bytes of temporaries.
    """

    def __init__(self, xp, Q, K, scale: float, causal: bool, memory_limit: int, input_dtype):
        self.xp, self.Q, self.K, self.scale, self.causal = xp, Q, K, scale, causal
        self.device = device_of(Q)
        self.dtype, self.input_dtype = Q.dtype, input_dtype
        self.shape = (int(Q.shape[0]), int(K.shape[0]))
        self.memory_limit = memory_limit
        self._norm = None

    def _rows_per_block(self) -> int:
        itemsize = np.dtype(str(self.dtype).split(".")[-1]).itemsize
        return max(1, self.memory_limit // (_TEMPORARIES * itemsize * self.shape[1]))

    def _blocks(self):
        step = self._rows_per_block()
        for start in range(0, self.shape[0], step):
            stop = min(start + step, self.shape[0])
            yield start, stop, self.rows(start, stop)

    def rows(self, start: int, stop: int):
        """Rows start:stop of P, (stop - start, n_keys)."""
        xp = self.xp
        S = self.Q[start:stop] @ self.K.T
        if self.causal:  # query i sees keys j <= i + n_keys - n_queries (the newest query sees all)
            offset = self.shape[1] - self.shape[0]
            i = xp.arange(start, stop, device=self.device)[:, None]
            j = xp.arange(self.shape[1], device=self.device)[None, :]
            S = xp.where(j > i + offset, xp.asarray(-math.inf, dtype=self.dtype, device=self.device), S)
        return _softmax(xp, S, self.scale)

    def matmat(self, X):
        # P is real: a complex block (a complex sketch, a complex shift of P) is
        # multiplied as P Re X + i P Im X, as the adapters do, never cast to real.
        return _real_product(self.xp, self._product, X, self.dtype)

    def rmatmat(self, Y):
        return _adjoint_product(self.xp, self._transposed_product, Y, self.dtype)

    def _product(self, X):
        X = self.xp.astype(X, self.dtype, copy=False)  # a real V of the model's own (half) precision
        blocks = []
        for _, _, P in self._blocks():
            blocks.append(P @ X)
            del P  # before the next block is made
        return blocks[0] if len(blocks) == 1 else self.xp.concat(blocks)

    def _transposed_product(self, Y):
        Y = self.xp.astype(Y, self.dtype, copy=False)
        out = None
        for start, stop, P in self._blocks():
            part = P.T @ Y[start:stop]
            out = part if out is None else out + part
            del P
        return out

    def norm(self) -> float:
        """||P||_F, from one pass over P's rows (cached)."""
        if self._norm is None:
            xp = self.xp
            squares = sum(float(xp.sum(xp.astype(P, xp.float64) ** 2)) for _, _, P in self._blocks())
            self._norm = math.sqrt(squares)
        return self._norm


def attention_operator(Q, K, *, scale=None, causal: bool = False,
                       memory_limit: int = DEFAULT_MEMORY_LIMIT) -> AttentionOperator:
    """The softmax attention matrix of one head, as an implicit operator.

    Parameters
    ----------
    Q : array, shape (n_queries, d)
    K : array, shape (n_keys, d)
        One head's queries and keys: NumPy arrays or torch tensors on any
        device. Integers become float64, half precisions are computed in
        float32 (and the factors of a decomposition returned in them).
    scale : float, default 1/sqrt(d)
        Scores are scale * q^T k.
    causal : bool, default False
        Mask the future: query i sees keys j <= i + n_keys - n_queries, so
        the last query sees every key (a decoder's step over a cache).
        Needs n_keys >= n_queries.
    memory_limit : int, default 256 MiB
        Bytes of temporaries per block of queries.

    Returns
    -------
    AttentionOperator
        P = softmax(scale Q K^T), (n_queries, n_keys), for :func:`randla.svd`
        and the other decompositions; ``matmat(V)`` is exact attention.

    Notes
    -----
    Each product reads Q and K and costs O(n_queries n_keys (d + k)) for a
    block of k vectors; memory is O(memory_limit) beyond the inputs and the
    result. Scores are shifted by their row's maximum before they are
    scaled and exponentiated, so exp never overflows, whatever the scale.

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> Q, K, V = rng.standard_normal((3, 500, 16))
    >>> P = randla.attention_operator(Q, K)
    >>> out = P.matmat(V)                       # exact attention, (500, 16)
    >>> r = randla.svd(P, 20, rng=0)            # its leading singular values
    >>> out.shape, r.S.shape
    ((500, 16), (20,))
    """
    input_dtype = getattr(Q, "dtype", None)
    xp, Q, K, _ = _check_inputs(Q, K, batched=False)
    if causal and K.shape[0] < Q.shape[0]:
        raise ValueError(
            f"causal attention needs at least as many keys as queries (the first query would see none); "
            f"got {Q.shape[0]} queries, {K.shape[0]} keys."
        )
    memory_limit = check_int("memory_limit", memory_limit, 1)
    return AttentionOperator(xp, Q, K, _check_scale(scale, int(Q.shape[1])), bool(causal), memory_limit,
                             input_dtype if _half(xp, input_dtype) else Q.dtype)


def _segment_means(xp, X, m: int):
    """Means of m contiguous, nearly equal segments of X's tokens, (..., m, d)."""
    n = int(X.shape[-2])
    bounds = np.linspace(0, n, m + 1).round().astype(int)
    M = np.zeros((m, n))
    for i in range(m):
        M[i, bounds[i] : bounds[i + 1]] = 1.0 / (bounds[i + 1] - bounds[i])
    return xp.asarray(M, dtype=X.dtype, device=device_of(X)) @ X


def _masked_segment_means(xp, X, m: int, mask):
    """:func:`_segment_means` of each sequence's real tokens (``mask``), as if the others were not there."""
    device = device_of(X)
    real = xp.astype(mask, xp.float64)  # positions in double, as np.linspace computes the unmasked bounds
    length = xp.sum(real, axis=-1, keepdims=True)  # (..., 1)
    rank = xp.cumulative_sum(real, axis=-1) - 1  # position among the real tokens
    # Segment j holds ranks in [round(j L / m), round((j + 1) L / m)), as np.linspace(0, L, m + 1) rounds.
    steps = xp.arange(1, m + 1, dtype=xp.float64, device=device)
    bounds = xp.round(steps * (length / m))  # (..., m)
    segment = xp.sum(xp.astype(bounds[..., :, None] <= rank[..., None, :], xp.int64), axis=-2)  # (..., n)
    j = xp.arange(m, device=device)[:, None]
    member = xp.astype((segment[..., None, :] == j) & mask[..., None, :], X.dtype)  # (..., m, n)
    return (member / xp.sum(member, axis=-1, keepdims=True)) @ X


def _uniform_landmarks(xp, X, m: int, rng):
    idx = np.sort(rng.choice(int(X.shape[-2]), m, replace=False))
    return xp.take(X, xp.asarray(idx, device=device_of(X)), axis=X.ndim - 2)


def nystrom_attention(Q, K, V, landmarks: int = 64, *, key_mask=None, query_mask=None, scale=None,
                      method: str = "segment_means", rcond: float = 1e-2, rng=None):
    """Softmax attention P V approximated through m landmarks, in time linear in n.

    With landmark queries Q~ and keys K~ (m of each),
    P ~ softmax(s Q K~^T) softmax(s Q~ K~^T)^+ softmax(s Q~ K^T), a Nystrom
    approximation of the attention matrix (Xiong et al. 2021, eq. 14), applied
    to V right to left without forming any n x n matrix.

    Parameters
    ----------
    Q : array, shape (..., n_queries, d)
    K : array, shape (..., n_keys, d)
    V : array, shape (..., n_keys, d_v)
        Queries, keys and values with any leading batch and head axes, which
        broadcast.
    landmarks : int, default 64
        m, at most min(n_queries, n_keys). At m = n (all tokens) with
        ``rcond=0`` the result is exact attention up to rounding (the default
        ``rcond`` drops the small singular values of the landmark kernel:
        about 1% off).
    key_mask : bool array, shape (..., n_keys), optional
        True for a real key, False for padding (a tokenizer's
        ``attention_mask``; ``mask[:, None, :]`` for keys of shape (batch,
        heads, n, d)); with ``"segment_means"`` only. Padding takes no
        part: the landmarks are segment means of each sequence's real keys
        (and real queries, see ``query_mask``), and no probability goes to
        a padded key. A padded sequence's real queries then get what its
        unpadded copy gets.
    query_mask : bool array, shape (..., n_queries), optional
        True for a real query, for the query landmarks (``"segment_means"``
        only). Default: ``key_mask`` where there are as many queries as keys
        (self-attention: one padded sequence), otherwise all queries. For
        cross-attention between sequences padded to the same length, pass
        the queries' own mask.
    scale : float, default 1/sqrt(d)
    method : {"segment_means", "uniform"}, default "segment_means"
        "segment_means": means of m contiguous segments of the queries and
        of the keys (Nystromformer's choice: deterministic, and smooth in
        the tokens); "uniform": m tokens drawn without replacement.
    rcond : float, default 1e-2
        Singular values of the m x m landmark matrix below rcond times its
        largest are dropped from its pseudo-inverse (formed in double). That
        matrix is often nearly singular, and a cutoff near machine precision
        amplifies its error: on 36 of MiniLM's attention heads (n = 512,
        m = 128) the median error was 0.26 at 1e-2 and 0.68 at 1e-4, the
        worst 2.3 and 49; cutoffs from 3e-3 to 3e-2 did about as well.
    rng : None, int, SeedSequence, BitGenerator or Generator
        For ``method="uniform"``.

    Returns
    -------
    array, shape (..., n_queries, d_v)
        In the inputs' library, device and dtype (half precisions computed
        in float32).

    Notes
    -----
    Cost O(n m (d + d_v) + m^3) per head instead of O(n^2 (d + d_v)); memory
    O(n m). There is no causal form: the landmarks mix past and future. The
    error follows how well m landmarks capture P's row and column spaces:
    small where attention is smooth or concentrated on few directions,
    large for sharp, token-specific attention (compare with the optimal
    rank-m error, ``randla.svd(attention_operator(Q, K), m)``).

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> topics = rng.standard_normal((8, 16)) * 2      # a text of 8 topics in turn
    >>> X = topics[np.repeat(np.arange(8), 250)] + 0.3 * rng.standard_normal((2000, 16))
    >>> V = rng.standard_normal((2, 2000, 16))          # two heads over the same tokens
    >>> out = randla.nystrom_attention(X, X, V, 64)
    >>> exact = randla.attention_operator(X, X).matmat(V[0])
    >>> out.shape, bool(np.linalg.norm(out[0] - exact) < 0.1 * np.linalg.norm(exact))
    ((2, 2000, 16), True)
    """
    input_dtype = getattr(V, "dtype", None)
    xp, Q, K, V = _check_inputs(Q, K, V)
    m = check_int("landmarks", landmarks, 1, min(int(Q.shape[-2]), int(K.shape[-2])))
    s = _check_scale(scale, int(Q.shape[-1]))
    method = check_choice("method", method, ("segment_means", "uniform"))
    if isinstance(rcond, bool) or not isinstance(rcond, numbers.Real) or not 0 <= rcond < 1:
        raise ValueError(f"`rcond` must be a number in [0, 1); got {rcond!r}.")
    batch = _leading(Q, K, V)
    mask = _check_mask(xp, key_mask, K, batch, m)
    if query_mask is None and mask is not None and int(Q.shape[-2]) == int(K.shape[-2]):
        query_mask = key_mask  # one padded sequence (self-attention)
    q_mask = _check_mask(xp, query_mask, Q, batch, m, "query_mask")
    if method == "uniform":
        if mask is not None or q_mask is not None:
            raise ValueError(
                "`key_mask` and `query_mask` work with method='segment_means': uniform landmarks would differ "
                "per sequence."
            )
        gen = check_rng(rng)
        Ql, Kl = _uniform_landmarks(xp, Q, m, gen), _uniform_landmarks(xp, K, m, gen)
    else:
        Ql = _segment_means(xp, Q, m) if q_mask is None else _masked_segment_means(xp, Q, m, q_mask)
        Kl = _segment_means(xp, K, m) if mask is None else _masked_segment_means(xp, K, m, mask)
    F = _softmax(xp, Q @ Kl.mT, s)  # (..., n_q, m)
    A = _softmax(xp, Ql @ Kl.mT, s)  # (..., m, m)
    scores = Ql @ K.mT
    if mask is not None:
        scores = xp.where(mask[..., None, :], scores, -math.inf)
    B = _softmax(xp, scores, s)  # (..., m, n_k)
    A_pinv = xp.astype(xp.linalg.pinv(xp.astype(A, xp.float64), rtol=float(rcond)), Q.dtype)
    out = F @ (A_pinv @ (B @ V))
    return xp.astype(out, input_dtype) if _half(xp, input_dtype) else out


def _half(xp, dtype) -> bool:
    return dtype is not None and xp.isdtype(dtype, "real floating") and xp.finfo(dtype).bits < 32


def _orthogonal_gaussian(d: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """(d, m) with N(0, I_d) columns, orthogonal within each block of d (Yu et al. 2016)."""
    blocks = []
    for start in range(0, m, d):
        G = rng.standard_normal((d, d))
        Qg, R = np.linalg.qr(G)
        Qg *= np.sign(np.diag(R))  # Haar-distributed directions
        lengths = np.sqrt(rng.chisquare(d, size=d))  # the norms of Gaussian vectors
        blocks.append((Qg * lengths)[:, : m - start])
    return np.concatenate(blocks, axis=1)


def _feature_logits(xp, X, W, mask=None):
    """W^T x - |x|^2 / 2, the log of the features; -inf for tokens outside ``mask``."""
    logits = X @ W - xp.sum(X * X, axis=-1, keepdims=True) / 2
    return logits if mask is None else xp.where(mask[..., None], logits, -math.inf)


def _positive_features(xp, logits, stabilizer: str):
    """exp(logits) / sqrt(m) with a common factor taken out for range.

    ``"rows"`` divides each row by its own maximum (queries: it cancels in
    their normalisation); ``"all"`` by the maximum over the head's tokens
    (keys: the same factor in numerator and denominator). Tokens outside
    the mask (logits -inf) get the feature 0 and no say in the factor.
    """
    if stabilizer == "rows":
        top = xp.max(logits, axis=-1, keepdims=True)
    else:
        top = xp.max(xp.max(logits, axis=-1, keepdims=True), axis=-2, keepdims=True)
    return xp.exp(logits - top) / math.sqrt(logits.shape[-1])


def performer_attention(Q, K, V, n_features: int = 256, *, key_mask=None, scale=None, causal: bool = False,
                        orthogonal: bool = True, rng=None):
    """Softmax attention P V approximated by positive random features (FAVOR+), linear in n.

    exp(s q^T k) = E[phi(q)^T phi(k)] for phi(x) = exp(W^T x' - |x'|^2 / 2) /
    sqrt(m), x' = sqrt(s) x and W's columns N(0, I) (Choromanski et al. 2021,
    Lemma 1). Then P V ~ D^-1 phi(Q) (phi(K)^T V) with D = diag(phi(Q)
    (phi(K)^T 1)): no n x n matrix, and every weight positive.

    Parameters
    ----------
    Q : array, shape (..., n_queries, d)
    K : array, shape (..., n_keys, d)
    V : array, shape (..., n_keys, d_v)
    n_features : int, default 256
        m, the number of random features; the error falls like 1/sqrt(m).
    key_mask : bool array, shape (..., n_keys), optional
        True for a real key, False for padding (a tokenizer's
        ``attention_mask``; ``mask[:, None, :]`` for keys of shape (batch,
        heads, n, d)): padded keys get the feature 0, so no weight.
    scale : float, default 1/sqrt(d)
    causal : bool, default False
        Query i sees keys j <= i + n_keys - n_queries, by prefix sums over
        blocks of queries (needs n_keys >= n_queries).
    orthogonal : bool, default True
        Orthogonal random features: W orthogonal in blocks of d, same
        marginals, lower variance (Choromanski et al. 2021, Theorem 2).
    rng : None, int, SeedSequence, BitGenerator or Generator
        Source of W, drawn in float64 on the host (the same ``rng`` gives the
        same W for NumPy and torch) and shared by all heads.

    Returns
    -------
    array, shape (..., n_queries, d_v)

    Notes
    -----
    Cost O(n m (d + d_v)), memory O(n m). The estimator is unbiased for each
    kernel value, but its relative variance is (exp(s |q + k|^2) - 1) / m
    (a log-normal mean), so it suits attention with moderate scores; on
    MiniLM's heads, whose scores are not, the median error with 512
    features was still 0.69 (``bench/results/attention.md``).

    Examples
    --------
    >>> import numpy as np, randla
    >>> rng = np.random.default_rng(0)
    >>> Q, K = rng.standard_normal((2, 2000, 16)) * 0.3   # small scores
    >>> V = rng.standard_normal((2000, 16)) + 1.0
    >>> out = randla.performer_attention(Q, K, V, 512, rng=0)
    >>> exact = randla.attention_operator(Q, K).matmat(V)
    >>> bool(np.linalg.norm(out - exact) < 0.05 * np.linalg.norm(exact))
    True
    """
    input_dtype = getattr(V, "dtype", None)
    xp, Q, K, V = _check_inputs(Q, K, V)
    mask = _check_mask(xp, key_mask, K, _leading(Q, K, V))
    m = check_int("n_features", n_features, 1)
    s = _check_scale(scale, int(Q.shape[-1]))
    n_q, n_k = int(Q.shape[-2]), int(K.shape[-2])
    if causal and n_k < n_q:
        raise ValueError(
            f"causal attention needs at least as many keys as queries; got {n_q} queries, {n_k} keys."
        )
    d = int(Q.shape[-1])
    draw = _orthogonal_gaussian(d, m, check_rng(rng)) if orthogonal else check_rng(rng).standard_normal((d, m))
    W = xp.asarray(draw, dtype=Q.dtype, device=device_of(Q))
    root = math.sqrt(s)
    phi_q = _positive_features(xp, _feature_logits(xp, Q * root, W), "rows")
    key_logits = _feature_logits(xp, K * root, W, mask)
    if causal:
        out = _causal_linear_attention(xp, phi_q, key_logits, V)
    else:
        phi_k = _positive_features(xp, key_logits, "all")
        numerator = phi_q @ (phi_k.mT @ V)
        denominator = phi_q @ xp.sum(phi_k, axis=-2)[..., None]
        out = numerator / denominator
    return xp.astype(out, input_dtype) if _half(xp, input_dtype) else out


def _exp_gap(xp, low, high):
    """exp(low - high) for low <= high, 0 where low is -inf (no real key there) even if high is."""
    real = low > -math.inf
    zero = xp.zeros_like(low)
    return xp.where(real, xp.exp(xp.where(real, low, zero) - xp.where(real, high, zero)), zero)


def _causal_linear_attention(xp, phi_q, key_logits, V):
    """D^-1 (mask o phi_q phi_k^T) V by blocks of queries: the keys every query of a
    block sees enter a running sum, the rest a small masked block.

    Each key's features are scaled by its own largest, phi~_j = exp(logits_j - a_j),
    and the factor exp(a_j) is carried relative to the largest a over the keys a
    query sees (online softmax's running maximum). A factor taken over all keys,
    future ones included, would underflow in float32 the features of every key a
    query sees once a later key is far larger (a beginning-of-sequence token
    attended strongly), leaving the query with 0 / 0.
    """
    n_q, n_k = int(phi_q.shape[-2]), int(key_logits.shape[-2])
    offset = n_k - n_q
    device = device_of(V)
    a = xp.max(key_logits, axis=-1)  # (..., n_k), -inf for padding
    phi_k = xp.exp(key_logits - xp.where(a > -math.inf, a, xp.zeros_like(a))[..., None])
    batch = np.broadcast_shapes(tuple(phi_k.shape[:-2]), tuple(V.shape[:-2]))
    state = xp.zeros((*batch, phi_k.shape[-1], V.shape[-1]), dtype=V.dtype, device=device)
    total = xp.zeros((*batch, phi_k.shape[-1], 1), dtype=V.dtype, device=device)
    top = xp.full((*a.shape[:-1], 1), -math.inf, dtype=a.dtype, device=device)  # max a over the summed keys
    seen, blocks = 0, []
    for start in range(0, n_q, _CAUSAL_CHUNK):
        stop = min(start + _CAUSAL_CHUNK, n_q)
        shared = start + offset + 1  # keys j < shared are seen by every query of the block
        if shared > seen:
            new = a[..., seen:shared]
            grown = xp.maximum(top, xp.max(new, axis=-1, keepdims=True))
            keys = phi_k[..., seen:shared, :] * _exp_gap(xp, new, grown)[..., None]
            carry = _exp_gap(xp, top, grown)[..., None]
            state = state * carry + keys.mT @ V[..., seen:shared, :]
            total = total * carry + xp.sum(keys, axis=-2)[..., None]
            top, seen = grown, shared
        block_q = phi_q[..., start:stop, :]
        reference = top  # (..., 1): the largest a each query of the block sees
        if stop + offset > shared:  # the block's own keys, under the causal mask
            i = xp.arange(start, stop, device=device)[:, None]
            j = xp.arange(shared, stop + offset, device=device)[None, :]
            visible = j <= i + offset
            own = a[..., None, shared : stop + offset]  # (..., 1, b)
            reference = xp.maximum(top, xp.max(xp.where(visible, own, -math.inf), axis=-1))  # (..., q)
            gaps = _exp_gap(xp, xp.where(visible, own, -math.inf), reference[..., None])
            weights = (block_q @ phi_k[..., shared : stop + offset, :].mT) * gaps
            numerator = weights @ V[..., shared : stop + offset, :]
            denominator = xp.sum(weights, axis=-1, keepdims=True)
        else:
            numerator = denominator = 0
        carry = _exp_gap(xp, xp.broadcast_to(top, reference.shape), reference)[..., None]
        numerator = numerator + (block_q @ state) * carry
        denominator = denominator + (block_q @ total) * carry
        # A query that sees padded keys alone (left padding) gets 0, not 0 / 0.
        blocks.append(numerator / xp.where(denominator > 0, denominator, xp.ones_like(denominator)))
    return xp.concat(blocks, axis=-2)
