"""The Model Registry: registered models, their numbered versions, aliases and stages, the
resolution of models:/ URIs, and the event log that WatchModelEvents streams."""
