"""Offline model build: MovieLens-100k, training, TFLite export, evaluation (the only TensorFlow user)."""
