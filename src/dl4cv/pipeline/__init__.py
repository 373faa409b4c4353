"""What each DVC stage does, callable (and testable) without DVC; stages/*.py are the doors."""

import os

# Stage logs are read by people, and stages/*.py import this package before TensorFlow loads.
# Level 3 keeps TensorFlow's C++ log (absl format: I0000/W0000/E0000 ...) out of them: at 2 an
# E0000 "NodeDef mentions attribute use_unbounded_threadpool" still comes with every fit, a
# harmless tf.data notice that reads as an error. Real failures still raise Python exceptions;
# set TF_CPP_MIN_LOG_LEVEL=0 to see the C++ log again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
