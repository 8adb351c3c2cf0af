"""Trackline's async gRPC server."""
