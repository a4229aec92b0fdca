"""scikit-learn estimators over randla's PCA, kernel methods and matrix completion.

Thin shells: each validates with scikit-learn's conventions (``fit``,
``transform``/``predict``, ``random_state``, fitted attributes ending in
``_``) and calls :func:`randla.pca`, :class:`randla.StreamingPCA`,
:func:`randla.svd`, a function of :mod:`randla.kernels` or
:func:`randla.complete`. They take NumPy input (what scikit-learn pipelines
pass); the kernel functions they wrap also take torch.
This package imports scikit-learn, so ``import randla`` loads it only when an
estimator is first used.
"""

from .completion import MatrixCompletion
from .decomposition import PCA, IncrementalPCA, TruncatedSVD
from .clustering import SpectralClustering
from .kernels import KernelRidge, Nystroem, RandomFourierFeatures

__all__ = ["PCA", "IncrementalPCA", "TruncatedSVD", "Nystroem", "RandomFourierFeatures", "KernelRidge",
           "SpectralClustering", "MatrixCompletion"]
