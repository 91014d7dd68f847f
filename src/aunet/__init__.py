"""aunet: compute-matched scaling studies of Autoregressive U-Nets against BPE transformers.

Layers, with imports flowing one way: data -> models -> training -> sweeps -> evaluation -> analysis.
This package's foundation: :mod:`aunet.tokenizers` (bytes), :mod:`aunet.splitting` (split rules -> levels),
:mod:`aunet.models` (AU-Net and the BPE baseline), :mod:`aunet.flops` (one FLOPs formula for both families).
"""

__version__ = "0.1.0"
