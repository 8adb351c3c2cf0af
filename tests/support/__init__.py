"""Helpers shared by tests and benchmarks: free ports, server processes, databases, points."""
