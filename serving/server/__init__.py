"""`fmnist serve`: a TF Serving-compatible model server, in layers that import only downward.

- `transport/`: bytes on the wire: the aio gRPC server (method table, health service,
  graceful stop), the Tornado HTTP server, HTTP limits, port checks. Knows no models.
- `servables/`: one loaded model version behind the `Servable` interface (base): the
  SavedModel and TFLite servables, the batching wrapper, warm-up replay, request checks
  (validation), tf.Example requests (examples), and the loader that picks and wraps them.
- `core/`: the server's config, the version registry (polling, policies, labels, draining),
  the data plane that every request goes through, and the Prometheus metrics.
- `api/`: TF Serving's gRPC services and REST API, each translating its wire format to
  data plane calls and back (responses holds the messages both answer with).
- `app.py` composes them; `cli.py` turns TF Serving's flags into a config; `process.py`
  starts a server as a child process (pipeline, tests, benchmarks).

To add a servable type, implement `servables.base.Servable` and pick it in
`servables.loader`; to add an RPC, add a data plane operation and translate it in both APIs.
"""
