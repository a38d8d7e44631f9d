"""Write examples/sequences.npz: variable-length sequences for `configs/npz_example.yaml`.

    python examples/make_npz.py

Each sequence has 2 features and 5 to 40 valid steps (right-padded with zeros to 40);
the target is its class: 1 when the first feature's values sum to more than the second's.
About 3% of the valid values are missing (NaN), for the config's `missing: ffill`.
"""

from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
count, steps = 2000, 40
lengths = rng.integers(5, steps + 1, count)
x = rng.normal(size=(count, steps, 2)).astype(np.float32)
valid = np.arange(steps)[None, :] < lengths[:, None]
x[~valid] = 0.0
y = ((x[..., 0] * valid).sum(axis=1) > (x[..., 1] * valid).sum(axis=1)).astype(np.int64)
x[(rng.random(x.shape) < 0.03) & valid[..., None]] = np.nan
out = Path(__file__).with_name("sequences.npz")
np.savez_compressed(out, x=x, y=y, lengths=lengths)
print(f"wrote {out}: x {x.shape}, y {y.shape}, lengths 5..{steps}")
