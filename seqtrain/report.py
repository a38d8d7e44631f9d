"""Rich tables of a run's results, for stderr (no TensorFlow)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

EPOCH_EXTRAS = ("learning_rate", "epoch_seconds")


def ordered_metrics(logs: dict) -> list[str]:
    """Metric names in reading order: loss, train metrics, val_loss, val metrics.

    `epoch`, `learning_rate` and `epoch_seconds` are epoch facts, not metrics: left out.
    """
    facts = ("epoch", *EPOCH_EXTRAS)
    train = sorted(k for k in logs if not k.startswith("val_") and k not in facts)
    val = sorted(k for k in logs if k.startswith("val_"))
    return sorted(train, key=lambda k: k != "loss") + sorted(val, key=lambda k: k != "val_loss")


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary_table(summary: dict[str, Any]) -> Table:
    """Final, best-epoch and test values of every metric of a run."""
    best_epoch = summary.get("best_epoch")
    table = Table(title=f"{summary['name']}: {summary['status']}", title_justify="left")
    table.add_column("metric")
    table.add_column(f"final (epoch {summary.get('epochs_run', 0)})", justify="right")
    table.add_column(f"best (epoch {best_epoch or '-'})", justify="right")
    table.add_column("test (best checkpoint)", justify="right")
    final, best, test = (summary.get(key) or {} for key in ("final", "best", "test"))
    for name in [k for k in final if not k.startswith("val_")] or list(test):
        table.add_row(name, _cell(final.get(name)), _cell(best.get(name)), _cell(test.get(name)))
        val = f"val_{name}"
        if val in final:
            table.add_row(val, _cell(final.get(val)), _cell(best.get(val)), "")
    baseline = summary.get("baseline")
    if baseline:
        scores = "  ".join(f"{k} {v:.4f}" for k, v in baseline.items() if k != "description")
        table.caption = f"baseline ({baseline['description']}) on the test split: {scores}"
        table.caption_justify = "left"
    return table


def eval_table(result: dict[str, Any]) -> Table:
    """The metrics of one `seqtrain eval`."""
    table = Table(
        caption=f"{result['checkpoint']}.keras on {result['num_samples']} {result['split']} "
        "sequences",
        caption_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _cell(value))
    return table
