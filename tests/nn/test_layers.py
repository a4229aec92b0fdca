import pytest
import torch

from randla.nn import LowRankLinear


def test_forward_is_the_product_of_the_factors():
    g = torch.Generator().manual_seed(0)
    up, down, bias = torch.randn(12, 3, generator=g), torch.randn(3, 20, generator=g), torch.randn(12, generator=g)
    layer = LowRankLinear(up, down, bias)
    x = torch.randn(7, 5, 20, generator=g)
    expected = x @ (up @ down).T + bias
    assert torch.allclose(layer(x), expected, atol=1e-5)
    assert (layer.in_features, layer.out_features, layer.rank) == (20, 12, 3)
    assert torch.allclose(layer.weight, up @ down)


def test_from_linear_is_the_truncated_svd():
    torch.manual_seed(0)
    linear = torch.nn.Linear(60, 40)
    layer = LowRankLinear.from_linear(linear, rank=10, rng=0)
    W = linear.weight.detach().double()
    S = torch.linalg.svdvals(W)
    optimum = S[10:].square().sum().sqrt()
    error = torch.linalg.norm(W - layer.weight.detach().double())
    assert error <= 1.05 * optimum
    assert torch.equal(layer.bias, linear.bias) and layer.bias is not linear.bias


def test_float64_and_no_bias():
    linear = torch.nn.Linear(30, 30, bias=False, dtype=torch.float64)
    layer = LowRankLinear.from_linear(linear, rank=30, rng=0)
    assert layer.bias is None and layer.up.dtype == torch.float64
    assert torch.allclose(layer.weight, linear.weight, atol=1e-10)


def test_bad_shapes():
    with pytest.raises(ValueError, match="common rank"):
        LowRankLinear(torch.zeros(4, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="bias"):
        LowRankLinear(torch.zeros(4, 3), torch.zeros(3, 5), torch.zeros(5))


def test_complex_weights_stay_complex():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 16, dtype=torch.complex128)
    W = linear.weight.detach()
    full = LowRankLinear.from_linear(linear, rank=16, rng=0)
    assert full.up.dtype == torch.complex128
    torch.testing.assert_close(full.weight, W, rtol=0, atol=1e-12)
    x = torch.randn(5, 32, dtype=torch.complex128)
    torch.testing.assert_close(full(x), linear(x), rtol=0, atol=1e-12)
    low = LowRankLinear.from_linear(linear, rank=4, rng=0)
    optimum = torch.linalg.svdvals(W)[4:].square().sum().sqrt()
    assert torch.linalg.norm(W - low.weight) <= 1.05 * optimum


def test_from_linear_reads_a_conv1d_weight_transposed(conv1d_mlp):
    conv = conv1d_mlp(widths=(60, 40))[0]
    W = conv.weight.detach().double().T  # Conv1D stores in x out
    full = LowRankLinear.from_linear(conv, rank=40, rng=0)
    x = torch.randn(7, 60)
    assert (full.in_features, full.out_features) == (60, 40)
    torch.testing.assert_close(full(x), conv(x), rtol=0, atol=1e-5)
    low = LowRankLinear.from_linear(conv, rank=10, rng=0)
    optimum = torch.linalg.svdvals(W)[10:].square().sum().sqrt()
    error = torch.linalg.norm(W - low.weight.detach().double())
    assert optimum <= error * (1 + 1e-6) and error <= 1.05 * optimum


def test_from_linear_refuses_other_modules():
    with pytest.raises(TypeError, match="must be a torch.nn.Linear or transformers' Conv1D; got Conv2d"):
        LowRankLinear.from_linear(torch.nn.Conv2d(3, 3, 1), rank=1)


def test_conv1d_is_detected_without_importing_transformers():
    import subprocess
    import sys

    # With transformers made unimportable, randla.nn still imports and compresses nn.Linear layers.
    script = (
        "import sys; sys.modules['transformers'] = None\n"
        "import torch\n"
        "from randla.nn import compress, load_compressed, save_compressed, pissa_init\n"
        "from randla.nn.layers import is_linear\n"
        "net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))\n"
        "small, report = compress(net, rank=4, rng=0)\n"
        "assert [layer.rank for layer in report.layers] == [4, 4]\n"
        "assert not is_linear(torch.nn.ReLU()) and is_linear(net[0])\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_from_linear_takes_a_linear_subclass():
    out_proj = torch.nn.MultiheadAttention(32, 4).out_proj  # a subclass of nn.Linear
    layer = LowRankLinear.from_linear(out_proj, rank=32, rng=0)
    torch.testing.assert_close(layer.weight, out_proj.weight.detach(), rtol=0, atol=1e-5)


def test_replace_module_refuses_the_model_itself():
    from randla.nn.layers import replace_module

    model = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="cannot replace the model"):
        replace_module(model, "", LowRankLinear(torch.randn(3, 2), torch.randn(2, 4)))
    assert list(model.named_children()) == []


def test_from_linear_keeps_what_trains_and_what_does_not():
    frozen = torch.nn.Linear(16, 12)
    frozen.requires_grad_(False)
    layer = LowRankLinear.from_linear(frozen, 4, rng=0)
    assert not any(p.requires_grad for p in layer.parameters())
    half = torch.nn.Linear(16, 12)
    half.bias.requires_grad_(False)  # BitFit the other way round: weights train, the bias is frozen
    layer = LowRankLinear.from_linear(half, 4, rng=0)
    assert layer.up.requires_grad and layer.down.requires_grad and not layer.bias.requires_grad
    assert layer.bias is not half.bias and torch.equal(layer.bias, half.bias)


def test_from_linear_under_inference_mode_gives_trainable_parameters():
    linear = torch.nn.Linear(16, 12)
    with torch.inference_mode():
        layer = LowRankLinear.from_linear(linear, 4, rng=0)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(3, 16)).sum().backward()
    optimizer.step()  # an inference tensor refuses the in-place update
    assert all(not p.is_inference() for p in layer.parameters())
