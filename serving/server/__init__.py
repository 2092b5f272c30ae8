"""`fmnist serve`: a TF Serving-compatible model server, in layers that import only downward:
`transport/` (bytes on the wire: gRPC, HTTP), `servables/` (one loaded model version),
`core/` (config, the version registry, the data plane every request goes through), `api/`
(TF Serving's gRPC and REST APIs over the data plane); `app.py` composes them, `cli.py`
turns TF Serving's flags into a config. docs/development.md#layout says more.
"""
