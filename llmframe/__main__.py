"""python -m llmframe: the same as the `llmframe` command."""

from .apps.cli import main

raise SystemExit(main())
