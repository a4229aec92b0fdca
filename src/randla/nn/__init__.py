"""Low-rank compression of pretrained models and LoRA initialisation (needs PyTorch).

>>> import randla.nn  # doctest: +SKIP
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - the torch extra is missing
    raise ImportError("randla.nn needs PyTorch: pip install 'randla[nn]'") from exc

from .causal import perplexity
from .compress import CompressionReport, LayerReport, compress
from .layers import LowRankLinear
from .lora import PissaInit, pissa_init
from .storage import load_compressed, save_compressed

__all__ = ["LowRankLinear", "compress", "CompressionReport", "LayerReport", "pissa_init", "PissaInit",
           "save_compressed", "load_compressed", "perplexity"]
