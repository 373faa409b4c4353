"""dl4cv: the experiments of Deep Learning for Computer Vision with Python, as one pipeline."""

import os

from dl4cv.runtime.gpus import share_by_default

# Stage logs are read by people, and every stage imports this package before TensorFlow loads
# (so does `python -m dl4cv.runtime.warmstart`, whose server key includes TF_* variables). Level 3
# keeps TensorFlow's C++ log (absl format: I0000/W0000/E0000 ...) out of them: at 2 an E0000
# "NodeDef mentions attribute use_unbounded_threadpool" still comes with every fit, a harmless
# tf.data notice that reads as an error. Real failures still raise Python exceptions; set
# TF_CPP_MIN_LOG_LEVEL=0 to see the C++ log again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A GPU is shared by default: JAX and TensorFlow take its memory as they need it
# (dl4cv.runtime.gpus).
share_by_default()

__version__ = "0.1.0"
