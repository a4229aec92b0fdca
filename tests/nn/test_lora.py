import pytest
import torch

from randla.nn import pissa_init


def _linear(m=80, n=120, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(n, m)


def test_adapter_plus_residual_is_the_weight():
    linear = _linear()
    before = linear.weight.detach().clone()
    A, B, residual = init = pissa_init(linear, 16, rng=0)
    assert A.shape == (16, 120) and B.shape == (80, 16) and residual.shape == (80, 120)
    assert torch.allclose(B @ A + residual, before, atol=1e-5)
    assert torch.equal(linear.weight, before)
    assert init.rank == 16


def test_adapter_holds_the_principal_part():
    linear = _linear()
    W = linear.weight.detach().double()
    s = torch.linalg.svdvals(W)
    init = pissa_init(linear, 16, rng=0)
    optimum = float(s[16:].square().sum().sqrt() / s.square().sum().sqrt())
    assert optimum * (1 - 1e-5) <= init.error <= 1.02 * optimum
    assert init.error == pytest.approx(float(torch.linalg.norm(init.residual.double()) / torch.linalg.norm(W)), rel=1e-4)
    # PiSSA's balanced split: A A^T = B^T B = diag(S).
    assert torch.allclose(init.A @ init.A.T, init.B.T @ init.B, atol=1e-4)


@pytest.mark.parametrize("scaling", [2.0, 0.5])
def test_a_scaled_adapter_starts_from_the_weight(scaling):
    # LoRA's forward is residual x + s B A x, s = lora_alpha / r: an unscaled split
    # would start 26-52% away from W where s != 1.
    linear = _linear()
    W = linear.weight.detach()
    A, B, residual = pissa_init(linear, 16, scaling=scaling, rng=0)
    assert torch.allclose(scaling * B @ A + residual, W, atol=1e-5)
    plain = pissa_init(linear, 16, rng=0)
    assert torch.allclose(residual, plain.residual, atol=1e-5)
    assert torch.allclose(B, plain.B / scaling**0.5, atol=1e-5)


@pytest.mark.parametrize("scaling", [0, -1.0, float("inf"), float("nan"), True, "2"])
def test_bad_scaling(scaling):
    with pytest.raises(ValueError, match="`scaling` must be a finite float > 0"):
        pissa_init(_linear(), 4, scaling=scaling)


def test_tensor_input_and_dtype():
    W = torch.randn(30, 40, dtype=torch.float64)
    A, B, residual = pissa_init(W, 5, rng=0)
    assert A.dtype == torch.float64
    W16 = W.to(torch.bfloat16)
    A, B, residual = pissa_init(W16, 5, rng=0)
    assert A.dtype == B.dtype == residual.dtype == torch.bfloat16


def test_integer_weight_is_promoted_to_float64():
    W = torch.randint(-5, 5, (30, 40), generator=torch.Generator().manual_seed(0))
    A, B, residual = pissa_init(W, 5, rng=0)
    assert A.dtype == B.dtype == residual.dtype == torch.float64
    assert torch.allclose(B @ A + residual, W.double(), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_weight_keeps_its_imaginary_part(dtype):
    W = torch.randn(30, 40, dtype=dtype, generator=torch.Generator().manual_seed(0))
    A, B, residual = init = pissa_init(W, 5, rng=0)
    assert A.dtype == B.dtype == residual.dtype == dtype
    assert torch.allclose(B @ A + residual, W, atol=1e-5)
    s = torch.linalg.svdvals(W.to(torch.complex128))
    optimum = float(s[5:].square().sum().sqrt() / s.square().sum().sqrt())
    assert optimum * (1 - 1e-5) <= init.error <= 1.05 * optimum


@pytest.mark.parametrize("rank", [0, 31, 2.5])
def test_bad_rank(rank):
    with pytest.raises(ValueError, match="rank"):
        pissa_init(torch.nn.Linear(40, 30), rank)


def test_not_a_layer():
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        pissa_init([[1.0]], 1)


def test_conv1d_is_split_as_its_weight_transposed(conv1d_mlp):
    conv = conv1d_mlp(widths=(120, 80))[0]
    W = conv.weight.detach().double().T  # out x in
    A, B, residual = init = pissa_init(conv, 16, rng=0)
    assert A.shape == (16, 120) and B.shape == (80, 16) and residual.shape == (80, 120)
    torch.testing.assert_close((B @ A + residual).double(), W, rtol=0, atol=1e-5)
    s = torch.linalg.svdvals(W)
    optimum = float(s[16:].square().sum().sqrt() / s.square().sum().sqrt())
    assert optimum * (1 - 1e-5) <= init.error <= 1.02 * optimum


def test_a_linear_subclass_is_a_linear():
    attention = torch.nn.MultiheadAttention(32, 4)  # its out_proj is a subclass of nn.Linear
    A, B, residual = pissa_init(attention.out_proj, 4, rng=0)
    torch.testing.assert_close(B @ A + residual, attention.out_proj.weight.detach(), rtol=0, atol=1e-5)


def test_pissa_under_inference_mode_gives_trainable_factors():
    linear = torch.nn.Linear(16, 12)
    with torch.inference_mode():
        A, B, residual = pissa_init(linear, 4, rng=0)
    A, B = torch.nn.Parameter(A), torch.nn.Parameter(B)  # refused for inference tensors
    (B @ A).sum().backward()
    assert A.grad is not None and B.grad is not None and not residual.is_inference()


def test_pissa_result_factors_and_reconstruct_give_the_principal_part():
    linear = torch.nn.Linear(40, 30, dtype=torch.float64)
    r = pissa_init(linear, 6, scaling=2.0, rng=0)
    L, R = r.factors()
    torch.testing.assert_close(L @ R, 2.0 * r.B @ r.A)
    torch.testing.assert_close(r.reconstruct() + r.residual, linear.weight.detach())
    U, S, Vh = torch.linalg.svd(linear.weight.detach())
    best = torch.linalg.norm(S[6:]) / torch.linalg.norm(S)
    assert r.error <= 1.01 * float(best) and r.scaling == 2.0
