"""Export stage: turn a training run into a TF Serving SavedModel version, TFLite models and
the manifest every later stage reads."""
