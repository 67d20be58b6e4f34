"""Faster training and inference on a CPU: oneDNN chosen per CPU (onednn.py), the recurrent
arithmetic (kernels.py) and the layers that run it in training (keras_internals.py)."""
