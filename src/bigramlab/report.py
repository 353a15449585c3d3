"""The sweep report's command: `python -m bigramlab.report <sweep or run dirs>`
(bigramlab.sweeps.report does the work)."""

from bigramlab.sweeps.report import main

if __name__ == "__main__":
    main()
