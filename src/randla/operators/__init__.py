"""Anything matrix-like, seen through products only.

``as_operator(A)`` wraps a NumPy array, SciPy sparse matrix or array,
``scipy.sparse.linalg.LinearOperator``, torch tensor (dense or sparse, any
device), CuPy array or Dask array in an :class:`Operator` with ``shape``,
``dtype``, ``matmat(X)`` (A @ X) and ``rmatmat(Y)`` (A^H @ Y). The algorithms
see only operators: they never copy, densify or modify the user's matrix.

Composites build new operators from old ones without forming anything:
:class:`Transposed`, :class:`Centered` (implicit mean subtraction, so PCA of
sparse data stays sparse), :class:`Shifted` (A + sI), and
:class:`PlusLowRank` (A + L R, of which :func:`residual` A - L R is a case).

The package's modules: ``base`` (the :class:`Operator` protocol and the
dtypes products are computed in), ``adapters`` (:func:`as_operator` and the
wrappers of each array library), ``dask_array`` (Dask arrays, one pass over
the chunks per product) and ``composites``.

Examples
--------
>>> import numpy as np, randla
>>> A = np.arange(6.0).reshape(3, 2)
>>> op = randla.as_operator(A)
>>> op.shape, op.matmat(np.ones((2, 1))).ravel().tolist()
((3, 2), [1.0, 5.0, 9.0])
"""

from .adapters import as_operator
from .base import Operator
from .composites import Centered, PlusLowRank, Shifted, Transposed, residual

__all__ = [
    "Operator",
    "as_operator",
    "Transposed",
    "Centered",
    "Shifted",
    "PlusLowRank",
    "residual",
]
