"""randla: randomized numerical linear algebra for AI.

Low-rank decompositions of matrices too big, too sparse or too implicit for
exact LAPACK: sketch with a random test matrix, orthonormalise, solve the
small problem exactly, lift back [HMT2011].

>>> import randla
>>> A = randla.testing.low_rank(500, 300, rank=20, rng=0)
>>> r = randla.svd(A, 20, rng=0)
>>> r.rank, r.U.shape
(20, (500, 20))
"""

from importlib.util import find_spec as _find_spec

from . import testing
from .attention import AttentionOperator, attention_operator, nystrom_attention, performer_attention
from .completion import CompletionResult, complete
from .cur import CURResult, cur
from .eigh import EighResult, NystromResult, eigh, nystrom
from .interp import IDResult, TwoSidedIDResult, interpolative, two_sided_id
from .kernels import (
    ColumnNystromResult,
    KernelOperator,
    KRRResult,
    PartialCholesky,
    column_nystrom,
    fourier_features,
    kernel_operator,
    kernel_ridge,
    landmarks,
    nystrom_kernel_ridge,
    rpcholesky,
    sparse_rbf_features,
)
from .kernels.clustering import SpectralClusteringResult, graph_spectral_clustering, spectral_clustering
from .operators import Centered, Operator, PlusLowRank, Shifted, Transposed, as_operator, residual
from .pca import PCAResult, pca
from .qb import QBResult, qb
from .rangefinder import estimate_error, posterior_error_bound
from .streaming import StreamingPCA
from .spectral import SpectralNormResult, StableRankResult, numerical_rank, spectral_norm, stable_rank
from .svd import SVDResult, svd

__version__ = "0.1.0"

_ESTIMATORS = ("PCA", "IncrementalPCA", "TruncatedSVD", "Nystroem", "RandomFourierFeatures", "KernelRidge",
               "SpectralClustering", "MatrixCompletion")


def __getattr__(name):
    # The estimators need scikit-learn; it is imported on first use only.
    if name in _ESTIMATORS:
        try:
            from . import estimators
        except ImportError as exc:
            raise ImportError(f"randla.{name} needs scikit-learn: pip install 'randla[sklearn]' ({exc})") from exc
        return getattr(estimators, name)
    raise AttributeError(f"module 'randla' has no attribute {name!r}")


__all__ = [
    "svd",
    "eigh",
    "nystrom",
    "qb",
    "pca",
    "interpolative",
    "two_sided_id",
    "cur",
    "complete",
    "CompletionResult",
    "estimate_error",
    "posterior_error_bound",
    "spectral_norm",
    "numerical_rank",
    "stable_rank",
    "SpectralNormResult",
    "StableRankResult",
    "as_operator",
    "Operator",
    "Transposed",
    "Centered",
    "Shifted",
    "PlusLowRank",
    "residual",
    "SVDResult",
    "EighResult",
    "NystromResult",
    "QBResult",
    "PCAResult",
    "StreamingPCA",
    "IDResult",
    "TwoSidedIDResult",
    "CURResult",
    "kernel_operator",
    "KernelOperator",
    "rpcholesky",
    "landmarks",
    "column_nystrom",
    "PartialCholesky",
    "ColumnNystromResult",
    "nystrom_kernel_ridge",
    "kernel_ridge",
    "KRRResult",
    "fourier_features",
    "sparse_rbf_features",
    "spectral_clustering",
    "graph_spectral_clustering",
    "SpectralClusteringResult",
    *(_ESTIMATORS if _find_spec("sklearn") else ()),  # a star import works without the extra
    "attention_operator",
    "AttentionOperator",
    "nystrom_attention",
    "performer_attention",
    "testing",
]
