"""Clients for any TF Serving endpoint (ours or the official server): gRPC and REST with one
API, the served-model parity check, and `fmnist client`/`fmnist parity`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fmnist.serving.client.base import Prediction, ServingError, check_images

if TYPE_CHECKING:
    from fmnist.serving.client.grpc_client import GrpcClient
    from fmnist.serving.client.rest_client import RestClient

__all__ = ["GrpcClient", "Prediction", "RestClient", "ServingError", "check_images"]


def __getattr__(name: str) -> Any:
    # Lazy: each client imports only its own transport (grpcio or requests).
    if name == "GrpcClient":
        from fmnist.serving.client.grpc_client import GrpcClient

        return GrpcClient
    if name == "RestClient":
        from fmnist.serving.client.rest_client import RestClient

        return RestClient
    raise AttributeError(name)
