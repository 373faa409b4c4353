"""dl4cv: the experiments of Deep Learning for Computer Vision with Python, as one pipeline."""

__version__ = "0.1.0"
