"""Serving stage: a TF Serving-compatible model server, its clients, and the wire both speak.

- `wire/`: what travels between them: TF Serving's messages as the project's own
  (protos, declared in the schema notation; messages, the classes and gRPC methods),
  canonical status codes and their HTTP mapping (status), DataTypes and shape limits
  (dtypes), TensorProto and JSON tensor codecs (tensor_proto, json_tensors, json_fast),
  signatures as plain data (signature), and warm-up files (tfrecord). No TensorFlow.
- `server/`: `fmnist serve`: flags and config files (cli, config), the model registry and
  version manager (registry), loaders (saved_model), request checks (validation), the gRPC
  and REST APIs (grpc_api + grpc_server, rest_api + http_server + http_limits), and the app
  that composes them (app).
- `client/`: gRPC and REST clients with one API (base, grpc_client, rest_client), the
  served-model parity check (parity) and `fmnist client` / `fmnist parity` (cli).
"""
