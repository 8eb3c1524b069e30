"""``python -m infonce_spec.conformance.golden verify RESULTS``."""

from .cli import main

raise SystemExit(main())
