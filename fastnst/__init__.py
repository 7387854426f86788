"""fastnst: fast feed-forward neural style transfer (Johnson, Alahi & Fei-Fei 2016).

Kept import-free so that ``fastnst-stylize`` starts without Lightning or Hydra.
"""

__version__ = "0.1.0"
