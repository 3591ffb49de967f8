"""Vector columns: an embedding run's answers as Arrow fixed_size_list<float32>, and back to a 2-D numpy array.

The run's answer matrix becomes the column's memory without a copy when every row is its own request (no
duplicates, no skipped rows); otherwise the rows are gathered once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..engine.vectors import Vectors


def vector_type(dimensions: int) -> pa.DataType:
    """The Arrow type of a vector column."""
    return pa.list_(pa.float32(), dimensions)


def column(vectors: Vectors | None, failed: np.ndarray, row_to_key: np.ndarray, dimensions: int | None) -> pa.Array:
    """The vector of every row, in row order; null where its request failed or the row was skipped."""
    matrix = None if vectors is None else vectors.matrix
    if matrix is None:  # nothing answered: every row is null
        return pa.nulls(len(row_to_key), vector_type(dimensions or 0))
    size = matrix.shape[1]
    identity = len(row_to_key) == len(matrix) and (row_to_key == np.arange(len(matrix))).all()
    if identity:
        values, missing = matrix, failed
    else:
        keys = np.where(row_to_key < 0, 0, row_to_key)
        values = matrix[keys] if len(matrix) else np.zeros((len(row_to_key), size), np.float32)
        missing = (row_to_key < 0) | (failed[keys] if len(failed) else True)
    flat = pa.array(values.reshape(-1))  # a view of the numpy buffer, not a copy
    mask = pa.array(missing) if missing.any() else None
    return pa.FixedSizeListArray.from_arrays(flat, size, mask=mask)


def as_arrow(values: Any) -> pa.Array:
    """A vector column (Arrow, or a pandas Series of ArrowDtype, or a list of vectors) as one Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    array = getattr(values, "array", None)
    arrow = getattr(array, "_pa_array", None)  # pandas' ArrowExtensionArray holds a ChunkedArray
    if arrow is not None:
        return as_arrow(arrow)
    if type(values).__module__.startswith("polars"):  # a Polars Series: its Arrow view, no copy
        return as_arrow(values.to_arrow())
    return None


def to_matrix(values: Any, *, name: str = "the vector column", labels: Any = None) -> np.ndarray:
    """A vector column as a 2-D float32 array: a view of the column's memory where Arrow allows it.

    A column without nulls, in one chunk, of fixed_size_list<float32> is not copied. Rows that are null become
    rows of NaN (a copy). A column of lists (variable length) is accepted when every row has the same length;
    otherwise ConfigError names the first row that differs (by its label in labels, where given).
    """
    arrow = as_arrow(values)
    if arrow is None:
        return _from_python(values, name, labels)
    kind = arrow.type
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        child = arrow.values.slice(arrow.offset * size, len(arrow) * size)
        if not pa.types.is_float32(child.type):
            child = child.cast(pa.float32())
        if child.null_count:
            raise ConfigError(f"{name} holds missing numbers inside its vectors: fill or drop them first")
        flat = child.to_numpy(zero_copy_only=True)
        matrix = flat.reshape(len(arrow), size)
        if arrow.null_count:
            matrix = matrix.copy()
            matrix[arrow.is_null().to_numpy(zero_copy_only=False)] = np.nan
        return matrix
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _from_python(arrow.to_pylist(), name, labels)
    raise ConfigError(f"{name} is of type {kind}, not a vector column (fixed_size_list<float32>, as embed makes)")


def _from_python(values: Any, name: str, labels: Any = None) -> np.ndarray:
    """Vectors given as Python lists or numpy rows, checked to be of one length."""
    rows = list(values)
    lengths = [None if v is None else len(v) for v in rows]
    known = [n for n in lengths if n is not None]
    if not known:
        return np.zeros((len(rows), 0), np.float32)
    size = known[0]
    for i, n in enumerate(lengths):
        if n is not None and n != size:
            row = f"the row at index {labels[i]!r}" if labels is not None else f"row {i}"
            raise ConfigError(f"{name} mixes vector lengths: {row} has {n} numbers, the first row has {size}; "
                              "every vector must come from the same model and dimensions")
    matrix = np.full((len(rows), size), np.nan, dtype=np.float32)
    for i, v in enumerate(rows):
        if v is not None:
            matrix[i] = v
    return matrix



def vectors(column: Any) -> np.ndarray:
    """A vector column (a pandas or Polars Series made by embed, or Arrow) as a 2-D float32 numpy array, without
    copying where Arrow allows it (one chunk, no missing rows; missing rows become rows of NaN)."""
    return to_matrix(column)
