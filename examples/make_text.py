"""Write examples/reviews.csv: short reviews whose label only word order tells.

    python examples/make_text.py

3,000 one-line reviews for `configs/text_example.yaml`, half `positive`, half `negative`.
Most (90%) contrast a praise and a complaint, one of them negated: "the food was good, it
was not bad" is positive, "the food was not good, it was bad" negative. Both hold the same
words; only where `not` sits decides, so a bag-of-words reading is at chance on them. The
other 10% are plain ("the room was awful"), which words alone solve. Seeded: the file is
the same on every run.
"""

import csv
from pathlib import Path

import numpy as np

SUBJECTS = ["food", "service", "room", "staff", "movie", "music", "price", "view", "bed",
            "coffee", "show", "trip"]
# (praise, complaint) words; any praise pairs with any complaint.
PRAISE = ["good", "great", "nice", "fine", "excellent", "lovely", "superb", "pleasant"]
COMPLAINT = ["bad", "awful", "poor", "terrible", "horrible", "dull", "nasty", "boring"]
INTENSIFIERS = ["", "", "really ", "very ", "quite "]
OPENERS = ["", "", "honestly, ", "overall ", "i think "]
# {praised} and {panned} are the two adjectives; the label is the one *not* negated.
CONTRASTS = [
    "the {subject} was {praised}, it was not {panned}",
    "the {subject} was not {panned}, it was {praised}",
    "the {subject} was {praised}, not {panned}",
    "it was not {panned} at all, the {subject} was {praised}",
]
PLAIN = "the {subject} was {praised}"


def review(rng: np.random.Generator, positive: bool, plain: bool) -> str:
    good = INTENSIFIERS[rng.integers(len(INTENSIFIERS))] + PRAISE[rng.integers(len(PRAISE))]
    bad = INTENSIFIERS[rng.integers(len(INTENSIFIERS))] + COMPLAINT[rng.integers(len(COMPLAINT))]
    subject = SUBJECTS[rng.integers(len(SUBJECTS))]
    if not positive:  # the same templates, the roles swapped: the same words, other order
        good, bad = bad, good
    template = PLAIN if plain else CONTRASTS[rng.integers(len(CONTRASTS))]
    opener = OPENERS[rng.integers(len(OPENERS))]
    return opener + template.format(subject=subject, praised=good, panned=bad)


def main(rows: int = 3000, seed: int = 0, path: Path | None = None) -> Path:
    rng = np.random.default_rng(seed)
    path = path or Path(__file__).with_name("reviews.csv")
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["text", "label"])
        for _ in range(rows):
            positive = bool(rng.integers(2))
            writer.writerow([review(rng, positive, plain=rng.random() < 0.1),
                             "positive" if positive else "negative"])
    return path


if __name__ == "__main__":
    out = main()
    print(f"wrote {out}")
