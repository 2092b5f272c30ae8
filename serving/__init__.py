"""Serving stage: a TF Serving-compatible model server, gRPC/REST clients and the served-model
parity check.

`fmnist serve` (server.py) speaks TF Serving's gRPC and REST APIs over SavedModels in TF
Serving's base-path layout: server_config (flags and config files), servables (versions,
polling, draining), signatures (running a version), validation (requests against the
signature, chunks), tensors + json_fast (wire conversions), grpc_api + grpc_server,
rest_api + http_server + http_limits, ports, metrics, responses and status (errors and their
codes).
"""
