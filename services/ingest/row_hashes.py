"""One 64-bit hash per row of a dataset's content, computed once per arrival.

The duplicate check and the train/test split both tell rows apart by their content. Hashing a
large frame is one of ingest's costliest passes, so they share one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A hash of each row's values (uint64): equal rows hash alike, whatever the column order."""
    ordered = frame[sorted(frame.columns, key=str)]
    return pd.util.hash_pandas_object(ordered, index=False).to_numpy()


def seeded(hashes: np.ndarray, seed: int) -> np.ndarray:
    """The hashes mixed with ``seed``: a pseudo-random order of the rows that another seed changes."""
    key = pd.util.hash_array(np.array([seed % 2**64], dtype=np.uint64))
    # hash_array mixes every bit of a 64-bit integer into every other, so xor-ing the seed in
    # first gives each seed its own order.
    return pd.util.hash_array(hashes ^ key[0])
