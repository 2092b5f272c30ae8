"""Rollout stage: answer real traffic like the version it replaces before taking its place.

- `logs`: TF Serving request logs (PredictionLog TFRecords) as replay reads them.
- `answers`, `endpoint`, `batching`, `replay`, `latency`: send logged requests to any TF
  Serving endpoint and compare each answer with the logged one (`fmnist replay`).
- `thresholds`, `compare`: a candidate version against a baseline, on the test set from
  the bundles and on replayed traffic, judged by TFX-style value and change thresholds; the
  verdict is the candidate's `blessing.json` (`fmnist compare`).
- `blessing`, `promote`: move a version label in `models.config` to a blessed version, or
  back (`fmnist promote`).
- `report`, `cli`: text and Markdown; the three commands.

TensorFlow-free: a `[client]` install runs all of it. It reads bundles, manifests,
`models.config` and logs, and writes `blessing.json` and `models.config`; it imports no
other stage's internals.
"""
