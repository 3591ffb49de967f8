"""Operations built on the engine and on its columns: vectors (search, similarity join, de-duplication), and the
semantic operators (filter, classify, join, top_k, rank, agg) as plans of generate calls through calls.Caller."""
