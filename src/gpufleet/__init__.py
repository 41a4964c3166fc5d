"""gpufleet: bare-metal GPU clusters from power-on to a verified, hardened cluster."""

__version__ = "0.1.0"
