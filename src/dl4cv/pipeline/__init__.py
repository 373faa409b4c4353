"""What each DVC stage does, callable (and testable) without DVC; stages/*.py are the doors."""

import os

# Stage logs are read by people: keep TensorFlow's C++ start-up chatter out of them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
