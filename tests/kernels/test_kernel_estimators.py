"""randla.Nystroem as a scikit-learn transformer: output feature names and set_output."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.kernel_approximation import Nystroem as SklearnNystroem
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import randla


def frame():
    return pd.DataFrame(np.random.default_rng(0).standard_normal((100, 3)), columns=["a", "b", "c"])


def test_feature_names_are_sklearns():
    X = frame()
    ours = randla.Nystroem(n_components=5, random_state=0).fit(X)
    theirs = SklearnNystroem(n_components=5, random_state=0).fit(X)
    names = ours.get_feature_names_out()
    np.testing.assert_array_equal(names, theirs.get_feature_names_out())
    np.testing.assert_array_equal(names, [f"nystroem{i}" for i in range(5)])
    np.testing.assert_array_equal(ours.get_feature_names_out(["a", "b", "c"]), names)


def test_pipeline_set_output_pandas():
    X = frame()
    pipe = make_pipeline(StandardScaler(), randla.Nystroem(n_components=5, random_state=0))
    plain = pipe.fit_transform(X)
    Z = pipe.set_output(transform="pandas").fit_transform(X)
    assert isinstance(Z, pd.DataFrame)
    assert list(Z.columns) == [f"nystroem{i}" for i in range(5)]
    assert Z.index.equals(X.index)
    np.testing.assert_allclose(Z.to_numpy(), plain, rtol=1e-12, atol=1e-12)


def test_names_follow_the_landmarks_kept():
    # Three distinct points: at most three landmarks, so three output columns.
    X = np.repeat(np.random.default_rng(1).standard_normal((3, 2)), 10, axis=0)
    est = randla.Nystroem(n_components=8, random_state=0).fit(X)
    names = est.get_feature_names_out()
    assert len(names) == est.transform(X).shape[1] == len(est.component_indices_) == 3
