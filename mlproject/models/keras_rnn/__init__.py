"""The Keras RNN kinds on TensorFlow: `rnn` (rnn.py) and `window_rnn` (window_rnn.py).

network.py builds the network of both, training.py trains it, inference.py is the one forward path
that scores and samples it; fast_cpu/ holds the CPU kernels and the one module that relies on Keras
internals.
"""
