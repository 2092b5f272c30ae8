"""`fmnist serve`, a TF Serving-compatible model server, in layers that import only downward:
`transport/`, `servables/`, `core/`, `api/`; `app.py` composes them (docs/development.md).
"""
