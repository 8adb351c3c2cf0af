"""The series engine: metric points in (ingest) and out (reads). It knows nothing of runs'
tables: tracking gives the writer its run check (``writer.RunCheck``) and checks that a run
exists before it reads the run's series.

Ingest, in the order a point takes:
  stream.py         IngestService.StreamMetrics: writer handshakes, seqs, acks after commit
  blocks.py         the one decoder: a SeriesBlock (or LogBatch's metrics) checked, as Segments
  segments.py       Segments: the points of a write as numpy columns
  writer.py         the group-commit writer: the bounded queue and the flush loop, unary Jobs
  settle.py         a flush's plan: which batches are stored, the rows their points become
  marks.py          writers' high-water marks, epochs and rejections (SQL)
  flush_log.py      the metric log: a flush's short series as one row
  compactor.py      moves metric log rows into chunks, in the background and before reads
  chunks.py         chunk rows and latest values (SQL), and how points become chunk rows
  codec.py          varints and the chunk blob format (pure)
  summary.py        a chunk's summary for chart views (pure)

Reads:
  chunk_points.py   points, chunk metadata, step ranges, loading and collecting chunk points
  reads.py          GetMetricHistory pages and GetMetricHistories
  downsample.py     chart views from chunk rows and summaries
  downsample_kernel.py  the per-bucket min/max/last kernel (pure numpy)
  history_wire.py   point columns into response messages
  latest_values.py  each series' latest value, as tracking shows it on a run
"""
