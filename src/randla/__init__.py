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

from . import testing
from .eigh import EighResult, NystromResult, eigh, nystrom
from .operators import Centered, Operator, PlusLowRank, Shifted, Transposed, as_operator, residual
from .qb import QBResult, qb
from .rangefinder import estimate_error, posterior_error_bound
from .svd import SVDResult, svd

__version__ = "0.1.0"

__all__ = [
    "svd",
    "eigh",
    "nystrom",
    "qb",
    "estimate_error",
    "posterior_error_bound",
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
    "testing",
]
