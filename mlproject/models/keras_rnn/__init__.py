"""The Keras RNN kinds on TensorFlow: `rnn` (causal.py) and `window_rnn` (window.py).

network.py builds the network of both, training.py trains it, inference.py is the one forward path
that scores and samples it; fast_cpu/ holds the CPU kernels and the one module that relies on Keras
internals.
"""
