"""The train/test split: seeded, stratified for classification, and stable across versions.

Each row's place is decided by a seeded hash of its content rather than its position: the same
rows land on the same side whatever their order, and rows carried over into the next dataset
version mostly stay where they were, so a champion trained on the previous version is rarely
scored on rows it was trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.ingest.row_hashes import row_hashes, seeded
from shared.pipeline_spec import PipelineSpec


def split_rows(
    frame: pd.DataFrame, *, spec: PipelineSpec, hashes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The frame positions of the (train, test) rows, labelled rows only, in frame order.

    Positions rather than frames: the caller copies each side a slice at a time as it stores
    it, instead of holding both copies beside the frame. ``hashes`` are the frame's
    ``row_hashes``, when the caller has them already.
    """
    if hashes is None:
        hashes = row_hashes(frame)
    labels = frame[spec.target].notna().to_numpy()
    labelled = np.flatnonzero(labels)
    if len(labelled) < 2:
        raise ValueError(f"{len(labelled)} labelled rows cannot be split into train and test")
    if not labels.all():
        hashes = hashes[labels]
    if spec.task == "classification":
        strata = _strata(frame[spec.target].iloc[labelled])
    else:
        strata = np.zeros(len(labelled), dtype=np.intp)
    in_test = _test_rows(seeded(hashes, spec.seed), strata, fraction=spec.validation.test_fraction)
    if in_test.all() or not in_test.any():
        raise ValueError("the split left one side empty; more rows are needed")
    return labelled[~in_test], labelled[in_test]


def split_dataset(
    frame: pd.DataFrame, *, spec: PipelineSpec, hashes: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, test) frames at the positions ``split_rows`` gives: the rows ingest stores."""
    train, test = split_rows(frame, spec=spec, hashes=hashes)
    return frame.take(train).reset_index(drop=True), frame.take(test).reset_index(drop=True)


def _strata(target: pd.Series) -> np.ndarray:
    """A code per row: rows whose labels read the same as text (1, 1.0 and "1" apart) share one."""
    codes, labels = pd.factorize(target)
    # Factorizing the labels, then their few distinct spellings, costs far less than
    # spelling out every row's label.
    _, spelled = np.unique(pd.Index(labels).astype(str).to_numpy(), return_inverse=True)
    return np.asarray(spelled)[codes]


def _test_rows(keys: np.ndarray, strata: np.ndarray, *, fraction: float) -> np.ndarray:
    """Which rows go to test: in each stratum, the rows of smallest key (equal keys by position).

    A row's key is a seeded function of its content alone, so the choice does not depend on
    where the row sits or on the other rows of the stratum.
    """
    in_test = np.zeros(len(keys), dtype=bool)
    for stratum in range(int(strata.max()) + 1):
        rows = np.flatnonzero(strata == stratum)
        size = len(rows)
        wanted = round(size * fraction)
        if size >= 2:  # every class with two rows or more is seen on both sides
            wanted = min(max(wanted, 1), size - 1)
        if wanted == 0:
            continue
        # The wanted-th smallest key, found without sorting the stratum; rows below it are in,
        # and of the (identical) rows that share it, the first ones by position fill the rest.
        stratum_keys = keys[rows]
        threshold = np.partition(stratum_keys, wanted - 1)[wanted - 1]
        below = stratum_keys < threshold
        tied = np.flatnonzero(stratum_keys == threshold)[: wanted - int(below.sum())]
        in_test[rows[below]] = True
        in_test[rows[tied]] = True
    return in_test
