"""Write examples/load.csv: an hourly load series for `configs/csv_series_example.yaml`.

    python examples/make_series.py

3,000 hours of a load that grows steadily (so the test part, the last 10%, lies above
almost everything seen in training), follows a daily and a weekly cycle and the
temperature, plus noise. A model fed globally standardised values meets levels it never
saw; one fed windows relative to their last value (`normalization: window`) does not.
"""

from pathlib import Path

import numpy as np

rng = np.random.default_rng(0)
hours = np.arange(3000)
temperature = 15 + 8 * np.sin(2 * np.pi * (hours - 9) / 24) + rng.normal(0, 1.0, hours.size)
load = (100 + 0.04 * hours                              # growth
        + 10 * np.sin(2 * np.pi * hours / 24)           # daily cycle
        + 4 * np.sin(2 * np.pi * hours / 168)           # weekly cycle
        + 0.8 * temperature
        + rng.normal(0, 1.5, hours.size))
start = np.datetime64("2026-01-01T00:00")
lines = ["time,load,temperature"]
lines += [f"{start + np.timedelta64(int(h), 'h')},{load[h]:.3f},{temperature[h]:.2f}"
          for h in hours]
out = Path(__file__).with_name("load.csv")
out.write_text("\n".join(lines) + "\n")
print(f"wrote {out}: {hours.size} hours, load {load.min():.0f}..{load.max():.0f}")
