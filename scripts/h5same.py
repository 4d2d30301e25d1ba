#!/usr/bin/env python3
"""Whether two gpt2q checkpoints hold the same bytes in the given groups (default: /params and
/optim), as h5diff does on the CPU machines; for the GPU machine, which has h5py but no HDF5
tools.   usage: h5same.py A.h5 B.h5 [group...]"""
import sys

import h5py
import numpy as np


def datasets(f, group):
    out = {}
    f[group].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


a_path, b_path, groups = sys.argv[1], sys.argv[2], sys.argv[3:] or ["/params", "/optim"]
with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
    bad = 0
    for g in groups:
        da, db = datasets(a, g), datasets(b, g)
        if da.keys() != db.keys():
            print(f"{g}: different datasets"); bad += 1; continue
        for k in da:
            if da[k].shape != db[k].shape or da[k].tobytes() != db[k].tobytes():
                n = int(np.sum(da[k] != db[k])) if da[k].shape == db[k].shape else -1
                print(f"{g}/{k}: {n} values differ (max |diff| {np.max(np.abs(da[k] - db[k])) if n > 0 else 0})")
                bad += 1
        print(f"{g}: {len(da)} datasets, {'identical' if not bad else 'DIFFERENT'}")
    sys.exit(1 if bad else 0)
