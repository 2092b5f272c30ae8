"""Serving stage: a TF Serving-compatible model server, its clients, and the wire both speak.

- `wire/`: what travels between them: TF Serving's messages as the project's own
  (protos, declared in the schema notation; messages, the classes and gRPC methods),
  canonical status codes and their HTTP mapping (status), DataTypes and shape limits
  (dtypes), TensorProto and JSON tensor codecs (tensor_proto, json_tensors, json_fast),
  signatures as plain data (signature), TFRecord files (tfrecord), request logs and warm-up
  files of PredictionLog (prediction_log), and models.config as a shared file
  (model_config_file). No TensorFlow.
- `server/`: `fmnist serve`, laid out as a model server is: `servables/` (one model version
  behind the `Servable` interface: SavedModel, TFLite, batching, warm-up, request checks),
  `core/` (config, the version registry, the data plane both APIs call, metrics), `api/`
  (gRPC and REST, translating their wire formats to the data plane), `transport/` (the gRPC
  and HTTP servers, limits, ports), and `app` that composes them.
- `client/`: gRPC and REST clients with one API (base, grpc_client, rest_client), the
  served-model parity check (parity) and `fmnist client` / `fmnist parity` (cli).
"""
