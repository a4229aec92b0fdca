import json
import os

import pytest
import torch

from randla.nn import compress, load_compressed, save_compressed
from randla.nn.storage import DESCRIPTION, FACTORS


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.ReLU(), torch.nn.Linear(60, 20, bias=False))


@pytest.fixture
def saved(tmp_path):
    net = _net()
    small, report = compress(net, reduction=0.5, rng=0)
    save_compressed(small, tmp_path / "out", report=report)
    return net, small, tmp_path / "out"


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_round_trip_gives_identical_outputs(saved):
    net, small, path = saved
    loaded = load_compressed(net, path)
    x = torch.randn(8, 40)
    assert torch.equal(loaded(x), small(x))
    assert type(net[0]) is torch.nn.Linear  # the original is not modified
    description = json.loads((path / DESCRIPTION).read_text())
    assert description["report"]["reduction"] >= 0.5
    assert not list(path.glob(".*tmp"))


def test_shared_down_projection_is_saved_once(tmp_path):
    from randla.nn import LowRankLinear

    down = torch.nn.Parameter(torch.randn(3, 10))
    net = torch.nn.ModuleDict({"a": LowRankLinear(torch.randn(4, 3), down), "b": LowRankLinear(torch.randn(5, 3), down)})
    save_compressed(net, tmp_path)
    with_bias = torch.nn.ModuleDict({"a": torch.nn.Linear(10, 4), "b": torch.nn.Linear(10, 5)})
    with pytest.raises(ValueError, match="bias"):
        load_compressed(with_bias, tmp_path)
    original = torch.nn.ModuleDict({"a": torch.nn.Linear(10, 4, bias=False), "b": torch.nn.Linear(10, 5, bias=False)})
    loaded = load_compressed(original, tmp_path)
    assert loaded["a"].down is loaded["b"].down
    from safetensors.torch import load_file

    assert sorted(load_file(tmp_path / FACTORS)) == ["a.down", "a.up", "b.up"]


def test_corrupt_factors_are_refused(saved):
    net, _, path = saved
    before = _state(net)
    data = bytearray((path / FACTORS).read_bytes())
    data[-5] ^= 0xFF
    (path / FACTORS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_compressed(net, path, inplace=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_corrupt_description_is_refused(saved):
    net, _, path = saved
    (path / DESCRIPTION).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_compressed(net, path)


def test_mismatched_model_is_refused_untouched(saved):
    _, _, path = saved
    other = torch.nn.Sequential(torch.nn.Linear(40, 50), torch.nn.ReLU(), torch.nn.Linear(50, 20, bias=False))
    before = _state(other)
    with pytest.raises(ValueError, match="is 50x40 in the model"):
        load_compressed(other, path, inplace=True)
    assert type(other[0]) is torch.nn.Linear
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(ValueError, match="no linear layer .* named"):
        load_compressed(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(40, 60)), path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_compressed"):
        load_compressed(_net(), tmp_path)
    with pytest.raises(ValueError, match="no LowRankLinear"):
        save_compressed(_net(), tmp_path)


def _rewrite_factors(path, data: bytes):
    """Replace the factors file and its checksum, as a deliberate substitution would."""
    import hashlib

    (path / FACTORS).write_bytes(data)
    description = json.loads((path / DESCRIPTION).read_text())
    description["sha256"] = hashlib.sha256(data).hexdigest()
    (path / DESCRIPTION).write_text(json.dumps(description))


def _rewrite_layer(path, name, entry):
    description = json.loads((path / DESCRIPTION).read_text())
    description["layers"][name] = entry
    (path / DESCRIPTION).write_text(json.dumps(description))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda path: (path / FACTORS).unlink(), "factors.safetensors is missing"),
        (lambda path: _rewrite_factors(path, b"\x80\x04K\x01."), "not a safetensors file"),
        (lambda path: _rewrite_layer(path, "0", 5), "not a JSON object"),
        (lambda path: _rewrite_layer(path, "0", {"shape": [60, 40], "rank": "4", "down": "0.down", "bias": True}),
         "int rank"),
        (lambda path: _rewrite_layer(path, "0", {"shape": [60, 40], "rank": 4, "down": ["0.down"], "bias": True}),
         "down tensor"),
    ],
)
def test_malformed_directories_are_refused_untouched(saved, damage, match):
    net, _, path = saved
    before = _state(net)
    damage(path)
    with pytest.raises(ValueError, match=match):
        load_compressed(net, path, inplace=True)
    assert type(net[0]) is torch.nn.Linear
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_loaded_factors_are_as_trainable_as_the_weights(saved):
    net, _, path = saved
    net[0].weight.requires_grad_(False)
    loaded = load_compressed(net, path)
    assert not loaded[0].up.requires_grad and not loaded[0].down.requires_grad and loaded[0].bias.requires_grad


@pytest.mark.parametrize("model", [None, {"0": 1}, torch.zeros(3, 3)])
def test_a_model_that_is_not_a_module_is_a_type_error(saved, tmp_path, model):
    _, _, path = saved
    with pytest.raises(TypeError, match=r"`model` must be a torch.nn.Module; got "):
        save_compressed(model, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(TypeError, match=r"`model` must be a torch.nn.Module; got "):
        load_compressed(model, path)


def test_conv1d_round_trip_and_mismatch(conv1d_mlp, tmp_path):
    net = conv1d_mlp(seed=2, widths=(40, 60, 20))
    small, report = compress(net, rank=8, rng=0)
    save_compressed(small, tmp_path / "out", report=report)
    description = json.loads((tmp_path / "out" / DESCRIPTION).read_text())
    assert description["layers"]["0"]["shape"] == [60, 40]  # out x in, as for a Linear
    loaded = load_compressed(net, tmp_path / "out")
    x = torch.randn(8, 40)
    assert torch.equal(loaded(x), small(x))
    assert type(net[0]).__name__ == "Conv1D"

    # A Conv1D of other widths (stored 40 x 50: 50 outputs) is refused by the same check as a Linear.
    other = conv1d_mlp(seed=2, widths=(40, 50, 20))
    before = _state(other)
    with pytest.raises(ValueError, match="layer '0' is 50x40 in the model but \\[60, 40\\] in the file"):
        load_compressed(other, tmp_path / "out", inplace=True)
    assert type(other[0]).__name__ == "Conv1D"
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(ValueError, match="no linear layer \\(torch.nn.Linear or transformers' Conv1D\\) named '2'"):
        load_compressed(torch.nn.Sequential(net[0], torch.nn.GELU(), torch.nn.Conv2d(60, 20, 1)), tmp_path / "out")


def _finetuned():
    """A compressed net whose layer left dense, norm and factors were all trained after compression."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.LayerNorm(60), torch.nn.Linear(60, 3))
    small, _ = compress(net, reduction=0.5, include="0", rng=0)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net, small


def test_training_after_compression_is_kept(tmp_path):
    net, small = _finetuned()
    save_compressed(small, tmp_path)
    x = torch.randn(8, 40)
    assert torch.equal(load_compressed(net, tmp_path)(x), small(x))
    # The whole state is saved: a model of the same architecture with other weights serves as the skeleton.
    other = torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.LayerNorm(60), torch.nn.Linear(60, 3))
    assert torch.equal(load_compressed(other, tmp_path)(x), small(x))


def test_factors_only_leaves_the_rest_to_the_original(tmp_path):
    from safetensors.torch import load_file

    net, small = _finetuned()
    save_compressed(small, tmp_path, factors_only=True)
    assert sorted(load_file(tmp_path / FACTORS)) == ["0.bias", "0.down", "0.up"]
    loaded = load_compressed(net, tmp_path)
    assert torch.equal(loaded[2].weight, net[2].weight) and torch.equal(loaded[0].up, small[0].up)


def test_a_saved_state_that_does_not_fit_is_refused_untouched(tmp_path):
    net, small = _finetuned()
    save_compressed(small, tmp_path)
    wider = torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.LayerNorm(60), torch.nn.Linear(60, 4))
    before = _state(wider)
    with pytest.raises(ValueError, match=r"its '2.weight' is of shape \(3, 60\); the model's is of shape \(4, 60\)"):
        load_compressed(wider, tmp_path, inplace=True)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())
    shorter = torch.nn.Sequential(torch.nn.Linear(40, 60), torch.nn.LayerNorm(60))
    with pytest.raises(ValueError, match="holds '2.weight', which the model has no entry of"):
        load_compressed(shorter, tmp_path)


def test_tied_weights_are_saved_and_stay_tied(tmp_path):
    torch.manual_seed(0)
    embed, head = torch.nn.Embedding(30, 16), torch.nn.Linear(16, 30, bias=False)
    head.weight = embed.weight
    net = torch.nn.ModuleDict({"embed": embed, "mid": torch.nn.Linear(16, 16), "head": head})
    small, _ = compress(net, rank=4, include="mid", rng=0)
    save_compressed(small, tmp_path)
    loaded = load_compressed(net, tmp_path)
    assert loaded["head"].weight is loaded["embed"].weight and torch.equal(loaded["embed"].weight, net["embed"].weight)


def test_a_bare_linear_layer_round_trips_as_its_low_rank_replacement(tmp_path):
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 24)
    small, _ = compress(linear, rank=4, rng=0)
    save_compressed(small, tmp_path)
    before = {k: v.clone() for k, v in linear.state_dict().items()}
    loaded = load_compressed(linear, tmp_path)
    x = torch.randn(5, 32)
    assert type(loaded).__name__ == "LowRankLinear" and torch.equal(loaded(x), small(x))
    assert list(linear.named_children()) == []
    with pytest.raises(ValueError, match="cannot replace itself in place.*inplace=False"):
        load_compressed(linear, tmp_path, inplace=True)
    assert list(linear.named_children()) == []
    assert all(torch.equal(v, before[k]) for k, v in linear.state_dict().items())


@pytest.mark.parametrize("umask, mode", [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_new_files_get_the_permissions_the_umask_gives(tmp_path, umask, mode):
    # They were 0o644 whatever the umask: world-readable weights under umask 077.
    import os
    import stat

    from randla.nn.storage import write_atomically

    small, _ = compress(_net(), reduction=0.5, rng=0)
    old = os.umask(umask)
    try:
        save_compressed(small, tmp_path / "out")
        save_compressed(small, tmp_path / "out")  # replacing the files keeps the mode the umask gave
        write_atomically(tmp_path / "out" / "evaluation.json", b"{}")
    finally:
        os.umask(old)
    for name in (FACTORS, DESCRIPTION, "evaluation.json"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([FACTORS, DESCRIPTION, "evaluation.json"])


def test_a_model_compress_left_dense_is_refused_saying_why(tmp_path):
    # "compress it first" was the whole message, for a model that came out of compress.
    small, report = compress(torch.nn.Sequential(torch.nn.Linear(32, 32)), energy=0.9999, rng=0)
    assert all(layer.rank is None for layer in report.layers)
    with pytest.raises(ValueError, match=r"no LowRankLinear layer to save\. If it came from randla\.nn\.compress, "
                                         r"every layer was left dense .* break-even rank"):
        save_compressed(small, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_replaced_files_keep_their_permissions(tmp_path):
    # Replacing a file took the umask's mode: weights the user had made private (chmod 600) became readable by all.
    import stat

    from randla.nn.storage import write_atomically

    small, _ = compress(_net(), reduction=0.5, rng=0)
    save_compressed(small, tmp_path / "out")
    write_atomically(tmp_path / "out" / "evaluation.json", b"{}")
    names = (FACTORS, DESCRIPTION, "evaluation.json")
    for name in names:
        os.chmod(tmp_path / "out" / name, 0o600)
    old = os.umask(0o022)
    try:
        save_compressed(small, tmp_path / "out")
        write_atomically(tmp_path / "out" / "evaluation.json", b"{}")
    finally:
        os.umask(old)
    for name in names:
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600, name


def test_a_missing_safetensors_names_the_extra(tmp_path, monkeypatch):
    import sys

    small, _ = compress(torch.nn.Sequential(torch.nn.Linear(64, 64)), rank=8, rng=0)
    for name in {"safetensors", "safetensors.torch", *(m for m in sys.modules if m.startswith("safetensors."))}:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now raises ImportError
    with pytest.raises(ImportError, match=r"needs safetensors: pip install 'randla\[nn\]'"):
        save_compressed(small, tmp_path / "out")
    with pytest.raises(ImportError, match=r"needs safetensors: pip install 'randla\[nn\]'"):
        load_compressed(torch.nn.Sequential(torch.nn.Linear(64, 64)), tmp_path / "out")
