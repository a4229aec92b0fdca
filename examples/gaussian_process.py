"""Gaussian-process regression on more points than an exact GP can take.

An exact GP on n points factors the n x n kernel matrix: O(n^3) time and
O(n^2) memory, seconds at n = 2,000 and, at n = 10^5, 80 GB and hours for
each evaluation of its likelihood. Nystrom kernel
ridge regression with m landmarks is the posterior mean of a GP whose
kernel is the landmarks' Nystrom approximation (the projected-process
approximation), and ``randla.nystrom_kernel_ridge`` keeps that GP's
posterior variance and evidence (log marginal likelihood) too, at
O(n m^2) time and O(n d + m^2) memory.

The data are smooth sines of 5 Gaussian features plus noise of standard
deviation 0.1 (``randla.testing.kernel_regression``), so the noise variance
alpha = 0.01 is known. The script chooses the rbf kernel's gamma and alpha
by the evidence on a grid, with all training points, and reports on held-out
points the RMSE (0.1 at best: the noise) and the coverage of the 95%
predictive intervals mean +- 1.96 sqrt(std^2 + alpha). Beside it,
scikit-learn's ``GaussianProcessRegressor``, exact, with its hyperparameters
optimised by L-BFGS (an rbf kernel plus white noise), on the largest
subsample it fits in comparable time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, WhiteKernel

import randla
from randla.testing import kernel_regression

GAMMAS = (0.05, 0.1, 0.2, 0.4)
ALPHAS = (0.003, 0.01, 0.03)


def scores(mean, std, y) -> tuple:
    """RMSE, and the share of targets inside mean +- 1.96 std."""
    return float(np.sqrt(np.mean((mean - y) ** 2))), float(np.mean(np.abs(mean - y) <= 1.96 * std))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points")
    args = parser.parse_args()
    n, m, n_exact = (10_000, 300, 1_000) if args.quick else (100_000, 500, 2_000)
    data = kernel_regression(n + 2_000, d=5, noise=0.1, rng=0)
    X, y, X_test, y_test = data.X[:n], data.y[:n], data.X[n:], data.y[n:]

    print(f"log marginal likelihood of the Nystrom GP, n = {n:,}, m = {m} landmarks")
    print("gamma  " + "  ".join(f"alpha={alpha:<6}" for alpha in ALPHAS))
    start, best = time.perf_counter(), None
    for gamma in GAMMAS:
        row = []
        for alpha in ALPHAS:
            model = randla.nystrom_kernel_ridge(X, y, alpha=alpha, gamma=gamma, n_components=m, rng=0)
            row.append(model.log_marginal_likelihood)
            if best is None or model.log_marginal_likelihood > best.log_marginal_likelihood:
                best = model
        print(f"{gamma:<6} " + "  ".join(f"{value:>12,.0f}" for value in row))
    seconds = time.perf_counter() - start
    mean, std = best.predict(X_test, return_std=True)
    rmse, coverage = scores(mean, np.sqrt(std**2 + best.alpha), y_test)
    gamma = best.kernel.params["gamma"]

    start = time.perf_counter()
    exact = GaussianProcessRegressor(RBF(1.0) + WhiteKernel(0.1), random_state=0).fit(X[:n_exact], y[:n_exact])
    exact_seconds = time.perf_counter() - start
    exact_rmse, exact_coverage = scores(*exact.predict(X_test, return_std=True), y_test)
    length, noise = exact.kernel_.k1.length_scale, exact.kernel_.k2.noise_level

    print()
    print("model                              points   gamma   alpha    RMSE  coverage  time (s)")
    print(f"randla Nystrom GP, evidence grid {n:>8} {gamma:>7.3f} {best.alpha:>7.4f} {rmse:>7.4f} "
          f"{coverage:>9.3f} {seconds:>9.1f}")
    print(f"scikit-learn exact GP, L-BFGS    {n_exact:>8} {1 / (2 * length**2):>7.3f} {noise:>7.4f} "
          f"{exact_rmse:>7.4f} {exact_coverage:>9.3f} {exact_seconds:>9.1f}")
    print(f"(the evidence grid fits {len(GAMMAS) * len(ALPHAS)} models; the noise variance is 0.0100)")


if __name__ == "__main__":
    main()
