"""Operations built on the engine and on its columns: vectors (search, similarity join, de-duplication)."""
