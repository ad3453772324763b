"""`python -m worker` is the same as the `activity-worker` command."""

from worker.cli import main

raise SystemExit(main())
