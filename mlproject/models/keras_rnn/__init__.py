"""The Keras RNN kinds on TensorFlow: `rnn` (causal.py) and `window_rnn` (window.py).

network.py builds the network both train (training.py); inference.py is the one forward path that
scores and samples; fast_cpu/ holds the CPU kernels and the one module that relies on Keras internals.
"""
