"""Sweeps read back: the ranked table, its figure and the n-gram table of a sweep's jobs (report),
which `python -m bigramlab.report` runs."""
