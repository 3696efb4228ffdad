"""``python -m syndicator``: the same as the ``syndicator`` command."""

from syndicator.cli import main

raise SystemExit(main())
