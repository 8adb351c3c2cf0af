"""Streamed, group-committed metric ingestion: the chunk format, the writer and the service."""
