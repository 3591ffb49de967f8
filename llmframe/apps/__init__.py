"""Applications on the core: the llmframe command, file runs, sweeps, the demo."""
