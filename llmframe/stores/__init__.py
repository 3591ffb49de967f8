"""Answer stores: the embedded diskcache store."""
