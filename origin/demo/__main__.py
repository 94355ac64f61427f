"""`python -m origin.demo ...` runs the demo origin server."""

from origin.demo.server import main

raise SystemExit(main())
