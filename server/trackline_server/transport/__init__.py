"""The edge between the network and the domains: the call context a service method gets
(``call.py``), the adapter that serves a transport-agnostic service over gRPC
(``grpc_server.py``) and the server's TLS credentials (``tls.py``). The HTTP side will add a
Connect adapter over the same services."""

from .call import Call, UnitOfWork, own_transactions, reads, unit_of_work, writes

__all__ = ["Call", "UnitOfWork", "own_transactions", "reads", "unit_of_work", "writes"]
