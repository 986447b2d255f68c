"""cosim: co-simulation of neural networks on RRAM compute-in-memory crossbars.

Flow (DESIGN §1): ``specs → device → spice → calibrate → layers → train → eval → cli``.
"""

__version__ = "0.1.0"
