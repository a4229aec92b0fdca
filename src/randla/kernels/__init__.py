"""Kernel methods that never form the n x n kernel matrix.

Implicit kernel operators (:func:`kernel_operator`) on which the core
decompositions run unchanged.
"""

from .features import FeatureMap, RandomFeatures, fourier_features, sparse_rbf_features
from .dense_krr import dense_kernel_ridge
from .functions import KERNELS, Kernel
from .krr import KRRResult, kernel_ridge, nystrom_kernel_ridge
from .landmarks import column_nystrom, landmarks, rpcholesky
from .nystrom_columns import ColumnNystromResult, PartialCholesky
from .operator import KernelOperator, kernel_operator

__all__ = [
    "kernel_operator",
    "KernelOperator",
    "Kernel",
    "KERNELS",
    "rpcholesky",
    "landmarks",
    "column_nystrom",
    "PartialCholesky",
    "ColumnNystromResult",
    "fourier_features",
    "sparse_rbf_features",
    "FeatureMap",
    "RandomFeatures",
    "nystrom_kernel_ridge",
    "kernel_ridge",
    "dense_kernel_ridge",
    "KRRResult",
]
