"""Training stage: load Fashion-MNIST, train the CNN, evaluate it, tune it.

Writes a run directory (model, config, history, metrics, plots) that export reads.
"""
