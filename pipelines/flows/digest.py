"""Content digests of task inputs, for caching by input hash.

Prefect's default input hashing pickles its arguments; a pickle of a DataFrame is not a
stable function of its content. :func:`content_digest` hashes frames by their values
(``pandas.util.hash_pandas_object``) plus their columns and dtypes, and everything else by
a canonical representation, so equal inputs give equal cache keys across processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel


def content_digest(*values: Any) -> str:
    """sha256 hex digest of ``values`` by content.

    Handles DataFrames, Series, numpy arrays, dataclasses, pydantic models, mappings,
    sequences, timestamps, paths and JSON scalars.

    Raises
    ------
    TypeError
        For an object it does not know how to hash by content (never silently by identity).
    """
    hasher = hashlib.sha256()
    for value in values:
        _update(hasher, value)
    return hasher.hexdigest()


def _update(hasher: Any, value: Any) -> None:
    if isinstance(value, pd.DataFrame):
        hasher.update(b"frame")
        hasher.update(json.dumps([[str(c), str(t)] for c, t in value.dtypes.items()]).encode())
        hasher.update(pd.util.hash_pandas_object(value, index=False).to_numpy().tobytes())
    elif isinstance(value, pd.Series):
        hasher.update(b"series" + str(value.dtype).encode() + str(value.name).encode())
        hasher.update(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
    elif isinstance(value, np.ndarray):
        hasher.update(b"array" + str(value.dtype).encode() + str(value.shape).encode())
        hasher.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, BaseModel):
        hasher.update(b"model" + type(value).__name__.encode())
        hasher.update(value.model_dump_json().encode())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        hasher.update(b"dataclass" + type(value).__name__.encode())
        for item in dataclasses.fields(value):
            hasher.update(item.name.encode())
            _update(hasher, getattr(value, item.name))
    elif isinstance(value, Mapping):
        hasher.update(b"map")
        for key in sorted(value, key=str):
            hasher.update(str(key).encode())
            _update(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(b"seq%d" % len(value))
        for item in value:
            _update(hasher, item)
    elif isinstance(value, pd.Timestamp | datetime | date):
        hasher.update(b"time" + pd.Timestamp(value).isoformat().encode())
    elif isinstance(value, Path):
        hasher.update(b"path" + str(value).encode())
    elif value is None or isinstance(value, str | int | float | bool):
        hasher.update(b"json" + json.dumps(value).encode())
    else:
        raise TypeError(
            f"cannot hash a {type(value).__name__} by content for a cache key; pass plain "
            "data (frames, dataclasses, pydantic models, JSON scalars)"
        )
