"""Project runs through the server (ProjectService): the durable queue, leases with expiry,
log lines, cancel."""
