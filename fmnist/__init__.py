"""fmnist-deploy: train a Fashion-MNIST CNN and ship it to TF Serving and TFLite.

This root package holds only the TF-free contracts the stages share (dataset
files and the split, the training run directory, the model's input scaling, metrics,
the artifact manifest, parity maths, errors) and the `fmnist` command.
Importing it must stay cheap and must never import TensorFlow.
"""

__version__ = "0.1.0"
