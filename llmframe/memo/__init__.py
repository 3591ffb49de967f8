"""The run memo: a repeated call answered from its last result, a chunk of rows at a time, above the per-row cache.

A call (face, output names, frame columns) keeps its results in Arrow files in the cache directory, one per first
chunk of rows (memo/files.py), each with a fingerprint per chunk of rows: the plan's answer-changing parts (the
keys' head, the template, the output and how rows are read) and the Arrow buffers of the columns the template reads
(memo/fingerprint.py). A chunk whose fingerprint the memo holds is answered from it without rendering or keying a
row; the other rows are planned as usual (a plan over just them) and go through the per-row path, which still
answers every unchanged row from the per-row cache. The memo is a copy: a chunk is kept only when every row of
it was answered (and so is in the per-row cache), cache="refresh" reads none and writes anew, cache=False never
touches it, and it goes whenever the per-row cache loses answers. The collector stitches both (memo/part.py).
"""
