"""The series engine: metric ingestion (the group-commit writer, the metric log, the
compactor, IngestService) and metric reads (history pages, downsampling, summaries)."""
