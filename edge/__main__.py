"""`python -m edge ...` runs the command line."""

from edge.cli.main import main

raise SystemExit(main())
