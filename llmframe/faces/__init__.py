"""The faces: pandas (df.llm, s.llm); they convert, validate and delegate, nothing else."""
