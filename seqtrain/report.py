"""Rich tables of a run's results, for stderr (no TensorFlow)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

EPOCH_EXTRAS = ("learning_rate", "epoch_seconds")
GRADIENT_PREFIX = "gradient_"  # the gradient probe's columns of metrics.csv


def ordered_metrics(logs: dict) -> list[str]:
    """Metric names in reading order: loss, train metrics, val_loss, val metrics.

    `epoch`, `learning_rate`, `epoch_seconds` and the gradient probe's `gradient_*` figures
    (`gradient_flow.py`) are epoch facts, not metrics: left out.
    """
    facts = ("epoch", *EPOCH_EXTRAS)
    train = sorted(k for k in logs if not k.startswith(("val_", GRADIENT_PREFIX))
                   and k not in facts)
    val = sorted(k for k in logs if k.startswith("val_"))
    return sorted(train, key=lambda k: k != "loss") + sorted(val, key=lambda k: k != "val_loss")


def describe_point(epoch: int, step: int) -> str:
    """A saved moment as users count: 'after epoch 3' or 'in epoch 4 after batch 20'.

    `epoch` is the 0-based epoch to continue with, `step` the batches of it already done.
    """
    if step == 0:
        return f"after epoch {epoch}"
    return f"in epoch {epoch + 1} after batch {step}"


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def status_text(summary: dict[str, Any]) -> str:
    """The run's status, and why it ended early when early stopping ended it.

    `completed (stopped early at epoch 12: val_loss did not improve for 3 epochs)`.
    """
    if summary.get("pruned_at"):
        return f"{summary['status']} (at epoch {summary['pruned_at']}, by its search's pruner)"
    epoch = summary.get("stopped_early")
    if not epoch:
        return summary["status"]
    train = (summary.get("config") or {}).get("train") or {}
    patience = (train.get("early_stopping") or {}).get("patience")
    why = (f": {train.get('monitor') or 'the monitored value'} did not improve for "
           f"{patience} epoch{'s' if patience != 1 else ''}" if patience else "")
    return f"{summary['status']} (stopped early at epoch {epoch}{why})"


def summary_table(summary: dict[str, Any]) -> Table:
    """Final, best-epoch and test values of every metric of a run."""
    best_epoch = summary.get("best_epoch")
    table = Table(title=f"{summary['name']}: {status_text(summary)}", title_justify="left")
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
    where = (f"{result['split']} sequences" if result["split"] != "input"
             else f"sequences of {result['input']['path']}")
    caption = f"{result['checkpoint']}.keras on {result['num_samples']} {where}"
    table = Table(caption=caption, caption_justify="left", min_width=min(len(caption), 100))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _cell(value))
    return table


def predict_line(report: dict[str, Any]) -> str:
    """One line on stderr about a `seqtrain predict`: what, with what, how long, how well."""
    epoch = f" (epoch {report['best_epoch']})" if report.get("best_epoch") else ""
    what = f"the {report['split']} split" if report["split"] else report["input"]
    seconds = report["seconds"]
    count = report["num_samples"]
    line = (f"predicted {count:,} sequence{'' if count == 1 else 's'} of {what} with "
            f"{report['checkpoint']}.keras{epoch}: read {seconds['read']:.2f} s, model "
            f"{seconds['predict']:.2f} s" + (f", written {seconds['write']:.2f} s"
                                             if "write" in seconds else ""))
    if report.get("metrics"):
        line += "; " + "  ".join(f"{k} {v:.4g}" for k, v in report["metrics"].items())
    return line


def speed_text(plan: dict[str, Any]) -> str:
    """What the CPU speed layer does for the run, in words (`runtime.cpu_tuning`)."""
    if plan.get("cpu_tuning", "auto") == "off":
        return "plain Keras (cpu_tuning: off)"
    parts = ["seqtrain's recurrent step" if plan["recurrent_loop"] == "seqtrain"
             else "Keras's recurrent loop"]
    if plan["streams"] > 1:
        parts.append(f"{plan['streams']} batch streams")
    return "cpu_tuning: " + ", ".join(parts)


def plan_text(plan: dict[str, Any]) -> str:
    """`seqtrain plan` for a terminal: shapes, layers, FLOPs, device, cuDNN, timing."""
    lines = ["data:"]
    for name, shapes in plan["data"].items():
        lines.append(f"  {name:<6} x {tuple(shapes['x'])}  y {tuple(shapes['y'])}")
    task = plan["task"]
    lines.append(f"task:   {task['kind']}, {'per step' if task['per_step'] else 'per sequence'}, "
                 f"metric {task['metric']}")
    lines.append("model:")
    for layer in plan.get("model", []):
        output = tuple(layer["output"])
        lines.append(f"  {layer['layer']:<18} {layer['type']:<16} {str(output):<18} "
                     f"{layer['params']:>9,} params")
    lines.append(f"  total {plan['num_params']:,} parameters")
    attention = plan.get("attention")
    if attention:
        lines.append(f"  attention: {attention['score']} pooling over the steps' "
                     f"{attention['inputs']}-wide outputs, {attention['params']:,} params, "
                     f"{attention['forward_flops_per_step']:,} FLOP per step")
    flops = plan["flops"]
    lines.append(f"flops:  {flops['forward_per_sequence'] / 1e6:.3g} MFLOP forward per sequence, "
                 f"{flops['train_step'] / 1e9:.3g} GFLOP per training step, "
                 f"{flops['epoch'] / 1e9:.3g} GFLOP per epoch ({flops['batches_per_epoch']} "
                 "steps)")
    lines.append(f"device: {', '.join(plan['devices'])} ({plan['strategy']}); precision "
                 f"{plan['precision']}; {plan['steps_per_execution']} step(s) per execution")
    for layer in plan["layers"]:
        verdict = "eligible for the cuDNN kernel on a GPU" if layer["cudnn"] else (
            "no cuDNN: " + "; ".join(layer["cudnn_blockers"]))
        lines.append(f"  {layer['name']}: {verdict}")
    if not plan["cudnn"]["on_gpu"]:
        lines.append("  (no GPU here: the generic kernel runs on the CPU)")
    lines.append(f"speed:  {speed_text(plan)}")
    measured = plan.get("measured")
    if measured:
        lines.append(f"timing: {measured['seconds_per_step'] * 1000:.1f} ms per step "
                     f"({measured['sequences_per_second']:,.0f} sequences/s over "
                     f"{measured['steps_timed']} steps), about {measured['epoch_seconds']:.1f} s "
                     f"per epoch, {measured['run_seconds']:.0f} s for the run")
    return "\n".join(lines)
