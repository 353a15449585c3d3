"""The sweep report is a command of the package: python -m bigramlab.report <sweep directory>."""

import sys

print(
    "error: scripts/sweep_report.py is python -m bigramlab.report: run "
    f"python -m bigramlab.report {' '.join(sys.argv[1:]) or '<sweep directory>'}",
    file=sys.stderr,
)
sys.exit(2)
