"""Kernel methods that never form the n x n kernel matrix.

Implicit kernel operators (:func:`kernel_operator`) on which the core
decompositions run unchanged.
"""

from .functions import KERNELS, Kernel
from .operator import KernelOperator, kernel_operator

__all__ = ["kernel_operator", "KernelOperator", "Kernel", "KERNELS"]
