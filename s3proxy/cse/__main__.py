"""Entry point: `python -m s3proxy.cse put|get|ls|rewrap`."""

import sys

from s3proxy.cse.cli import main

sys.exit(main())
