"""Serving stage: a TF Serving-compatible model server, gRPC/REST clients and the served-model parity check."""
