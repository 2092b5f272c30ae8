"""Pipeline stage: the whole job as one command (train, export, serve, parity checks, report)."""
