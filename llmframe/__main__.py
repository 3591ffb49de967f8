"""python -m llmframe: the same as the `llmframe` command."""

from .cli import main

raise SystemExit(main())
