"""Answer stores behind one seam (base.BaseStore): the embedded diskcache store and the shared PostgreSQL one."""
