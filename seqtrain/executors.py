"""Where a sweep's trials run: child processes on this machine, or Ray tasks on a cluster.

Either way a trial is the same command, `python -m seqtrain run|resume ... --quiet`, with
absolute paths into the shared sweep folder; the sweep itself (`sweep.py`) decides what
to run and records the results. Ray is an optional extra and imported only when chosen.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from seqtrain.errors import SeqtrainError

EXECUTORS = ("local", "ray")


def start_trial(args: list[str], log: Path | str) -> subprocess.Popen:
    """Start one trial's seqtrain command, with the Python that runs this code.

    The child has its own session, so a terminal's Ctrl-C reaches only the sweep, which
    passes exactly one signal on: the trial saves its state and exits 130/143.
    """
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "seqtrain", *args, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def run_trial(args: list[str], log: str) -> int:
    """A Ray task: run one trial to its end; its exit code."""
    child = start_trial(args, log)
    try:
        return child.wait()
    except KeyboardInterrupt:  # the task was cancelled (`ray.cancel`): stop it gracefully
        child.send_signal(signal.SIGINT)
        return child.wait()


class LocalExecutor:
    """`jobs` trials at a time, as child processes of this one."""

    name = "local"

    def __init__(self, jobs: int):
        self.workers = self.capacity = jobs
        self.stopping: int | None = None
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def execute(self, args: list[str], log: Path) -> int:
        child = start_trial(args, log)
        with self._lock:
            self._children.add(child)
            if self.stopping:
                child.send_signal(self.stopping)
        code = child.wait()
        with self._lock:
            self._children.discard(child)
        return code

    def interrupt(self, signum: int) -> None:
        with self._lock:
            self.stopping = signum
            for child in self._children:
                child.send_signal(signum)


class RayExecutor:
    """Each trial a Ray task on an existing cluster (or a local instance), by its resources.

    Every node must have seqtrain installed in the same environment and see the sweep
    folder at the same path (a shared filesystem): trials write their run directories
    there, and this process reads them.
    """

    name = "ray"

    def __init__(self, trials: int, address: str | None, cpus_per_trial: float,
                 gpus_per_trial: float):
        try:
            import ray
        except ImportError:
            raise SeqtrainError("--executor ray needs Ray, which is an optional extra: pip "
                                "install 'seqtrain[ray]' (from a checkout: pip install -e "
                                "'.[ray]'; or pip install ray)") from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise SeqtrainError(f"--address {address}: cannot reach a Ray cluster ({err}). "
                                    "Start one with `ray start --head`, or leave --address out "
                                    "to start Ray on this machine") from None
        self.workers = max(trials, 1)  # threads only wait; Ray's resources set the pace
        # Trials the cluster runs at once: a search asks for no more than that, so that
        # each new draw learns from the trials that have ended.
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1.0) / cpus_per_trial]
        if gpus_per_trial:
            fits.append(resources.get("GPU", 0.0) / gpus_per_trial)
        self.capacity = max(1, int(min(fits)))
        self.stopping: int | None = None
        self._task = ray.remote(run_trial).options(num_cpus=cpus_per_trial,
                                                   num_gpus=gpus_per_trial, max_retries=0)
        self._pending: set = set()
        self._lock = threading.Lock()

    def execute(self, args: list[str], log: Path) -> int:
        with self._lock:
            if self.stopping:
                return 128 + self.stopping
            ref = self._task.remote(args, str(log))
            self._pending.add(ref)
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.TaskCancelledError:
            return 128 + (self.stopping or signal.SIGINT)
        except self._ray.exceptions.RayError as err:  # a node lost, a worker killed
            with open(log, "a", encoding="utf-8") as file:
                file.write(f"ray: {err}\n")
            return 1
        finally:
            with self._lock:
                self._pending.discard(ref)

    def interrupt(self, signum: int) -> None:
        with self._lock:
            self.stopping = signum
            for ref in self._pending:
                self._ray.cancel(ref)  # a KeyboardInterrupt in the task: see run_trial


def check_options(name: str, *, jobs: int, address: str | None, cpus_per_trial: float,
                  gpus_per_trial: float) -> None:
    """Refuse executor options that cannot work together (`--dry-run` checks only these).

    Raises:
        SeqtrainError: An unknown name, or options of one executor given to the other.
    """
    if name not in EXECUTORS:
        raise SeqtrainError(f"--executor got {name!r}; expected local or ray")
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise SeqtrainError(f"--cpus-per-trial {cpus_per_trial:g} / --gpus-per-trial "
                            f"{gpus_per_trial:g}: expected > 0 CPUs and >= 0 GPUs")
    if name == "local" and (address is not None or gpus_per_trial):
        raise SeqtrainError("--address and --gpus-per-trial are for --executor ray; "
                            "local trials run --jobs at a time")
    if name == "ray" and jobs != 1:
        raise SeqtrainError(f"--jobs {jobs} is for --executor local; on Ray, trials run as "
                            "the cluster's resources allow: set --cpus-per-trial instead")


def make_executor(name: str, *, jobs: int, trials: int, address: str | None,
                  cpus_per_trial: float, gpus_per_trial: float):
    """The executor `--executor NAME` asks for.

    Raises:
        SeqtrainError: Options that cannot work together (`check_options`), or Ray not
            installed or not reachable.
    """
    check_options(name, jobs=jobs, address=address, cpus_per_trial=cpus_per_trial,
                  gpus_per_trial=gpus_per_trial)
    if name == "local":
        return LocalExecutor(jobs)
    return RayExecutor(trials, address, cpus_per_trial, gpus_per_trial)
