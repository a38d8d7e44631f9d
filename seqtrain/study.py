"""The Optuna side of `seqtrain sweep --search`: search spaces, the study, and its trials.

The study lives in the sweep folder as Optuna's journal file (`study.journal`), which
several processes may write at once: the sweep asks for trials and tells their results,
while each trial's own `seqtrain run` reports its objective every epoch and asks the
pruner whether to stop (`TrialReport`). Optuna is an optional extra, imported only here
and only when a search runs; parsing a search space needs no Optuna.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtrain.errors import SeqtrainError

INSTALL = ("pip install 'seqtrain[search]' (from a checkout: pip install -e '.[search]'; or "
           "pip install optuna)")
JOURNAL = "study.journal"
STUDY_NAME = "seqtrain"
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
_SPEC = re.compile(r"^\s*(float|int|choice)\s*\((.*)\)\s*$", re.DOTALL)


def import_optuna():
    """Optuna, quiet but for warnings; an install hint when it is missing.

    Raises:
        SeqtrainError: Optuna is not installed.
    """
    try:
        import optuna
    except ImportError:
        raise SeqtrainError(f"--search needs Optuna, an optional extra: {INSTALL}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


@dataclass(frozen=True)
class Param:
    """One axis of a search space: `key=float(lo,hi[,log])`, `int(lo,hi[,log])` or `choice(...)`.

    Attributes:
        key: A config path, as `--set` takes it (`train.learning_rate`).
        kind: `float`, `int` or `choice`.
        low: The lower bound (float and int).
        high: The upper bound, included.
        log: Sampled evenly on a log scale.
        choices: The values of a `choice`, as written (parsed like `--set` values).
    """

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """The axis as given on the command line, normalised."""
        if self.kind == "choice":
            return f"{self.key}=choice({','.join(self.choices)})"
        bounds = f"{_number(self.low)},{_number(self.high)}" + (",log" if self.log else "")
        return f"{self.key}={self.kind}({bounds})"

    @property
    def examples(self) -> list[str]:
        """Values every trial's config must accept: each choice, or the bounds.

        For a float also a value between them that is no whole number, so that `float` on
        an integer setting is refused before anything runs.
        """
        if self.kind == "choice":
            return list(self.choices)
        bounds = [_number(self.low), _number(self.high)]
        return bounds + [repr(self.low + (self.high - self.low) / math.pi)] * (
            self.kind == "float")

    def distribution(self):
        """The Optuna distribution of this axis."""
        optuna = import_optuna()
        if self.kind == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high),
                                                        log=self.log)
        return optuna.distributions.CategoricalDistribution(list(self.choices))

    def override(self, value: Any) -> str:
        """`key=value` for `--set`, exact: a float keeps every digit."""
        return f"{self.key}={value!r}" if self.kind == "float" else f"{self.key}={value}"

    def label(self, value: Any) -> str:
        """`key=value` for a run directory's name: floats to 3 significant digits."""
        return f"{self.key}={value:.3g}" if self.kind == "float" else f"{self.key}={value}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def parse_space(texts: list[str]) -> list[Param]:
    """`--space KEY=SPEC` options as Params; the keys are checked against configs later.

    Raises:
        SeqtrainError: A SPEC that is not one of the four forms, bounds out of order, a
            log scale over values <= 0, or a key given twice; the message names it.
    """
    params: list[Param] = []
    for text in texts:
        key, sep, spec = text.partition("=")
        key = key.strip()
        param = _parse_spec(key, spec) if sep and key else None
        if param is None:
            raise SeqtrainError(
                f"--space {text!r}: expected KEY=SPEC with SPEC one of float(lo,hi), "
                "float(lo,hi,log), int(lo,hi), int(lo,hi,log) or choice(a,b,...), for example "
                "train.learning_rate=float(1e-4,1e-2,log)")
        if isinstance(param, str):
            raise SeqtrainError(f"--space {text!r}: {param}")
        if key in (p.key for p in params):
            raise SeqtrainError(f"--space names {key} twice; give it one SPEC")
        params.append(param)
    return params


def _parse_spec(key: str, spec: str) -> Param | str | None:
    """The Param, a sentence saying what is wrong with the SPEC, or None if unreadable."""
    match = _SPEC.match(spec)
    if not match:
        return None
    kind, inner = match.groups()
    parts = [p.strip() for p in inner.split(",")]
    if kind == "choice":
        if len(parts) < 2 or not all(parts) or len(set(parts)) != len(parts):
            return ("choice(...) needs two or more distinct, non-empty values, such as "
                    "choice(lstm,gru); a single value is a --set")
        if any(c in inner for c in "[]{}\"'"):
            return ("choice(...) takes plain values (names, numbers, true/false, null), not "
                    "lists, mappings or quotes; fix the rest with --set")
        return Param(key, "choice", choices=tuple(parts))
    log = len(parts) == 3 and parts[2] == "log"
    if len(parts) != 2 + log:
        return None
    try:
        low, high = (float(p) if kind == "float" else int(p) for p in parts[:2])
    except ValueError:
        return (f"{kind}(lo,hi) needs {'numbers' if kind == 'float' else 'integers'} as "
                f"bounds; got {parts[0]} and {parts[1]}")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        return f"the bounds must be finite with lo < hi; got {parts[0]} and {parts[1]}"
    if log and low <= 0:
        return f"a log scale needs lo > 0; got {parts[0]}"
    return Param(key, kind, float(low), float(high), log)


@dataclass(frozen=True)
class StudySettings:
    """What the study optimises and how: fixed when the search starts (`sweep.json`)."""

    search: str  # tpe | random
    objective: str  # an epoch metric, also each trial's train.monitor
    direction: str  # min | max
    prune: str  # median | none
    pruner_startup_trials: int  # completed trials before the pruner may stop one
    pruner_warmup_epochs: int  # epochs a trial trains before the pruner may stop it

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> StudySettings:
        return cls(**{k: manifest[k] for k in cls.__dataclass_fields__})


def storage(folder: Path):
    """The study's journal storage in `folder`, safe for several processes at once."""
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def pruner(settings: StudySettings):
    """The pruner: Optuna's median rule once `pruner_startup_trials` trials completed, or none.

    A trial whose objective at an epoch is worse than the median of the completed trials'
    at that same epoch stops there, but never in its first `pruner_warmup_epochs` epochs:
    recurrent networks often sit at the baseline for a few epochs before they learn.
    """
    optuna = import_optuna()
    if settings.prune == "none":
        return optuna.pruners.NopPruner()
    # Optuna's steps here are 1-based epochs; it prunes at steps >= n_warmup_steps.
    return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                       n_warmup_steps=settings.pruner_warmup_epochs + 1)


def open_study(folder: Path, settings: StudySettings, seed: int | None = None):
    """The folder's study (created the first time), with its sampler and pruner.

    `seed` seeds the sampler; a resumed study passes the seed plus the trials it has, so
    it does not draw the first trials' values again.
    """
    optuna = import_optuna()
    # constant_liar: trials running side by side (--jobs) are not drawn alike.
    sampler = (optuna.samplers.TPESampler(seed=seed, constant_liar=True)
               if settings.search == "tpe" else optuna.samplers.RandomSampler(seed=seed))
    store = storage(folder)
    try:  # loading writes nothing to the journal; create_study(load_if_exists) would
        return optuna.load_study(study_name=STUDY_NAME, storage=store, sampler=sampler,
                                 pruner=pruner(settings))
    except KeyError:
        direction = "minimize" if settings.direction == "min" else "maximize"
        return optuna.create_study(study_name=STUDY_NAME, storage=store, sampler=sampler,
                                   pruner=pruner(settings), direction=direction)


class TrialReport:
    """A trial's own run, reporting its objective each epoch and asking whether to stop.

    Used by the trial's `seqtrain run` or `resume` process (`callbacks.ReportToStudy`).
    Reports nothing once the study has closed the trial (the sweep told its result), so a
    resumed trial that the study no longer waits for trains on as an ordinary run.
    """

    def __init__(self, folder: Path, number: int, settings: StudySettings):
        optuna = import_optuna()
        self.settings, self.number = settings, number
        store = storage(folder)
        study = optuna.load_study(study_name=STUDY_NAME, storage=store, pruner=pruner(settings))
        trial_id = store.get_trial_id_from_study_id_trial_number(
            store.get_study_id_from_name(STUDY_NAME), number)
        self._store, self._trial_id = store, trial_id
        self._trial = optuna.trial.Trial(study, trial_id)
        self._states = optuna.trial.TrialState

    @property
    def open(self) -> bool:
        """Whether the study still waits for this trial's results."""
        return self._store.get_trial(self._trial_id).state == self._states.RUNNING

    def report(self, epoch: int, logs: dict[str, float], last: bool = False) -> bool:
        """Report the epoch's objective; whether the pruner says to stop here.

        An epoch reported before (by a session killed after it) is neither reported nor
        judged again. The `last` epoch is reported but never pruned: the trial has completed.
        """
        value = logs.get(self.settings.objective)
        if value is None or not math.isfinite(value) or not self.open:
            return False
        if epoch in self._store.get_trial(self._trial_id).intermediate_values:
            return False  # judged when first reported; the pruner would judge a later step
        self._trial.report(float(value), epoch)
        return not last and self._trial.should_prune()


def load_settings(folder: Path) -> StudySettings:
    """The study settings recorded in a search folder's `sweep.json`.

    Raises:
        SeqtrainError: The folder holds no search.
    """
    import json

    try:
        manifest = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
        return StudySettings.from_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError):
        raise SeqtrainError(f"--study {folder}: not the folder of a seqtrain search (no "
                            "readable sweep.json with a search in it)") from None
