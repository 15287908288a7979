"""`python -m batchflow` runs the command line."""

from batchflow.cli import main

raise SystemExit(main())
