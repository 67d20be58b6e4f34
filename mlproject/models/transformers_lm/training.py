"""Training of the transformers kinds: packed blocks, checkpoints every epoch, resume, early stopping.

The training text is tokenized once and cut into blocks of `sequence_length` tokens laid end to
end (no padding). Each epoch takes `max_steps_per_epoch` optimizer steps (or the whole text) in
an order drawn from (seed, epoch), with dropout seeded the same way, so a run resumed at epoch k
ends with the same weights as one that never stopped. The learning rate warms up linearly, then
follows a cosine to zero, over the steps a time budget leaves where there is one (budget.py).
Accelerate places the work on the CPU, a GPU or several GPUs
(`accelerate launch -m mlproject.cli train`) and applies the mixed precision chosen here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mlproject.config import ConfigError, EvaluateConfig, Paths
from mlproject.fileio import atomic_path
from mlproject.models import epoch_log
from mlproject.models.cpu import has_bf16
from mlproject.models.interface import TrainingResult
from mlproject.models.transformers_lm.budget import TimeBudget, cosine_factor
from mlproject.models.transformers_lm.progress import progress_bar
from mlproject.models.transformers_lm.settings import TransformersTraining

CHECKPOINT, BEST = "last.pt", "best.pt"


def fingerprint(config: TransformersTraining, seed: int, tokens: Path) -> str:
    """What a checkpoint was trained from: settings, data and this kind's code."""
    return epoch_log.fingerprint(config, seed, [tokens / "train.txt", tokens / "validation.txt"])


def precision(config: TransformersTraining, flags: frozenset[str] | None = None) -> str:
    """Accelerate's mixed-precision setting: bf16 (or fp16) on a GPU, bf16 on a CPU with native
    bf16 instructions (about twice the fp32 step there, benchmarks/RESULTS.md), else fp32 ("no")."""
    import torch

    if config.precision != "auto":
        return "no" if config.precision == "fp32" else config.precision
    if computes_in_bf16(flags):
        return "bf16"
    return "fp16" if torch.cuda.is_available() else "no"


def computes_in_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the device the transformers kinds run on computes in bf16 natively: the GPU where
    there is one, else the CPU (training's mixed precision and generation's copy both follow it)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return has_bf16(flags)


def blocks(ids: np.ndarray, length: int, what: str, key: str) -> np.ndarray:
    """`ids` cut into whole blocks of `length` tokens, end to end."""
    count = len(ids) // length
    if count == 0:
        raise ConfigError(
            f"{key} = {length}: longer than the {len(ids)} {what} tokens; expected a shorter block or more text"
        )
    return ids[: count * length].reshape(count, length)


def steps_per_epoch(n_blocks: int, config: TransformersTraining, processes: int) -> int:
    per_step = config.batch_size * config.gradient_accumulation * processes
    steps = n_blocks // per_step
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    if steps == 0:
        raise ConfigError(
            f"train.batch_size = {config.batch_size}: {per_step} blocks per optimizer "
            f"step (with gradient_accumulation and processes) but {n_blocks} training "
            "blocks; expected a smaller batch or more text"
        )
    return steps


def epoch_order(n_blocks: int, steps: int, per_step: int, seed: int, epoch: int) -> np.ndarray:
    """The blocks of this epoch's steps, drawn from (seed, epoch): [step, block]."""
    order = np.random.default_rng([seed, epoch]).permutation(n_blocks)
    return order[: steps * per_step].reshape(steps, per_step)


def make_optimizer(parameters, config: TransformersTraining):
    import torch

    if config.optimizer == "adam":  # one fused kernel for all the update's arithmetic
        return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0, fused=True)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=config.learning_rate)
    return torch.optim.SGD(parameters, lr=config.learning_rate)


def make_schedule(optimizer, config: TransformersTraining, budget: TimeBudget):
    """The learning rate over the budget's steps: known once its first steps are timed."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lambda step: cosine_factor(step, budget.warmup(config.warmup_steps), budget.total_steps))


def epoch_end_seconds(network, validation_blocks: int, config: TransformersTraining, folder: Path, clock):
    """An estimate of an epoch's end from a step's time: the validation loss (a forward pass, about a
    third of a step's forward and backward) and the checkpoints (the weights saved once here, timed:
    the best weights, and the last ones with the optimizer's two moments)."""
    import torch

    def estimate(step_seconds: float) -> float:
        started = clock()
        probe = folder / "budget-probe.pt"
        torch.save({name: value.detach() for name, value in network.state_dict().items()}, probe)
        probe.unlink()
        saving = 4 * (clock() - started)
        batches = -(-validation_blocks // config.batch_size)
        return batches * step_seconds / (3 * config.gradient_accumulation) + saving

    return estimate


def validation_loss(network, blocks_: np.ndarray, batch_size: int) -> float:
    """Mean next-token loss over the validation blocks."""
    import torch

    network.eval()
    device = next(network.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(blocks_), batch_size):
            batch = torch.from_numpy(blocks_[first : first + batch_size]).to(device)
            loss = network(input_ids=batch, labels=batch).loss
            predicted = batch.shape[0] * (batch.shape[1] - 1)
            total, count = total + float(loss) * predicted, count + predicted
    network.train()
    return total / count


def save_torch(data, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def train(
    model_class,
    config: TransformersTraining,
    seed: int,
    paths: Paths,
    on_epoch=None,
    run_id=None,
    stop_after=None,
    on_step=None,
    scoring: EvaluateConfig | None = None,
) -> TrainingResult:
    """Fit (or resume) a model of `model_class`; save the best epoch's weights to `paths.model`."""
    import torch
    from accelerate import Accelerator
    from transformers import set_seed

    from mlproject.models import kinds
    from mlproject.models.evaluation import score_validation

    key = f"train.{config.kind}.max_minutes"
    budget = TimeBudget(config.max_minutes * 60, config.epochs, key)
    set_seed(seed)  # Python, NumPy and torch: the initial weights of a model from scratch
    tokens, checkpoints = Path(paths.tokens), paths.checkpoints
    model = model_class.initial(config, seed, tokens)
    if config.sequence_length > model.context:
        raise ConfigError(
            f"train.{config.kind}.sequence_length = {config.sequence_length}: beyond the model's "
            f"context of {model.context} tokens; expected at most {model.context}"
        )
    train_blocks = blocks(
        np.array(model.encode((tokens / "train.txt").read_text(encoding="utf-8"))),
        config.sequence_length,
        "training",
        f"train.{config.kind}.sequence_length",
    )
    validation_ids = np.array(model.encode((tokens / "validation.txt").read_text(encoding="utf-8")))
    validation_blocks = blocks(
        validation_ids,
        min(config.sequence_length, len(validation_ids)),
        "validation",
        f"train.{config.kind}.sequence_length",
    )[: max(1, config.validation_tokens // config.sequence_length)]

    # Only now, after the checks above: a refused setting leaves earlier checkpoints in place.
    log = epoch_log.EpochLog(checkpoints, fingerprint(config, seed, tokens), CHECKPOINT, BEST)
    accelerator = Accelerator(mixed_precision=precision(config), cpu=not torch.cuda.is_available())
    network = model.trainable(model.network, config)
    per_step = config.batch_size * config.gradient_accumulation * accelerator.num_processes
    steps = steps_per_epoch(len(train_blocks), config, accelerator.num_processes)
    optimizer = make_optimizer([p for p in network.parameters() if p.requires_grad], config)
    if config.max_minutes and accelerator.num_processes > 1:
        raise ConfigError(f"{key} = {config.max_minutes}: not yet for several processes; expected 0 with them")
    saved = log.resume(lambda path: torch.load(path, weights_only=True))
    budget.plan(steps, log.state.get("budget") if saved is not None else None)
    schedule = make_schedule(optimizer, config, budget)
    if saved is not None:
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        run_id = run_id or log.state.get("run_id")  # the stage's run wins: it may stand in for a lost one
    else:
        baseline = None
        if model.pretrained and scoring is not None:
            print("train: scoring the base model on the validation text (zero-shot)", flush=True)
            model.network.to(accelerator.device)
            baseline = {
                **score_validation(model, paths.tokens, scoring),
                "window": scoring.window,
                "stride": scoring.stride,
            }
            print(f"train: zero-shot {baseline['bits_per_byte']:.4f} bits per byte", flush=True)
        log.start(run_id, step=0, baseline=baseline)
    first_epoch = log.state["epoch"]
    network, optimizer = accelerator.prepare(network, optimizer)
    runner = torch.compile(network) if config.compile else network
    for epoch in range(first_epoch, config.epochs):
        if log.done or (stop_after is not None and epoch >= stop_after):
            break
        if budget.out_of_time(config.epochs - epoch):  # not one more step: a finished training
            log.finish(budget=budget.state(), budget_spent=True)
            break
        torch.manual_seed(seed * 1_000_003 + epoch)  # dropout: the same in a resumed epoch
        # The planned steps' order: a budget takes its first ones (the same as drawing fewer).
        order = epoch_order(len(train_blocks), steps, per_step, seed, epoch)
        mine = order[:, accelerator.process_index :: accelerator.num_processes]
        losses = run_epoch(
            accelerator,
            runner,
            optimizer,
            schedule,
            train_blocks,
            mine,
            config,
            epoch,
            budget,
            log,
            on_step,
            lambda: validation_loss(network, validation_blocks, config.batch_size),
            epoch_end_seconds(network, len(validation_blocks), config, checkpoints, budget.clock),
        )
        record = {
            "epoch": epoch + 1,
            "step": log.state["step"],
            "loss": float(np.mean(losses)),
            "val_loss": validation_loss(network, validation_blocks, config.batch_size),
        }
        if budget.fit:  # what the budget left each epoch, measured here: MLflow keeps it beside the losses
            record.update(steps_per_epoch=budget.fit.steps_per_epoch, step_seconds=budget.fit.step_seconds)
            log.state.update(budget=budget.state(), budget_spent=budget.spent_out)
        accelerator.wait_for_everyone()
        weights = accelerator.unwrap_model(network).state_dict()
        log.end_epoch(
            record,
            config,
            lambda path, weights=weights: save_torch(weights, path),
            lambda path, weights=weights: save_torch(
                {"network": weights, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, path
            ),
            writer=accelerator.is_main_process,
        )
        accelerator.wait_for_everyone()
        if on_epoch:
            on_epoch(record)
    if budget.spent_out:
        print(
            f"train: {key} = {config.max_minutes:g} spent after {log.state['step']} of {budget.total_steps} steps "
            f"(slower than the first ones); stopping, keeping epoch {log.state['best_epoch']}",
            flush=True,
        )
    history = log.history(config)
    best = accelerator.unwrap_model(network)
    best.load_state_dict(torch.load(checkpoints / BEST, weights_only=True))
    model.network = model.finished(best).to("cpu").eval()
    model.details["baseline"] = model.baseline = log.state.get("baseline")
    if accelerator.is_main_process:
        epoch_log.write_plot(paths.training_plot, checkpoints)
        kinds.save(model, paths.model)
    return TrainingResult(
        history=history,
        parameters=sum(p.numel() for p in model.network.parameters()),
        best_epoch=log.state["best_epoch"],
        stopped_early=bool(log.state.get("stopped_early")),  # by patience; a spent budget ends on time
        resumed_from_epoch=first_epoch,
        run_id=run_id,
        baseline=model.baseline,
    )


def run_epoch(
    accelerator,
    network,
    optimizer,
    schedule,
    train_blocks,
    order,
    config: TransformersTraining,
    epoch: int,
    budget: TimeBudget,
    log: epoch_log.EpochLog,
    on_step,
    measure_validation: Callable[[], float] | None = None,
    epoch_end: Callable[[float], float] = lambda step_seconds: 0.0,
) -> list[float]:
    """One epoch of optimizer steps, each summing `gradient_accumulation` batches; every
    `validate_every_steps` steps before its last (measured at the epoch's end) the step's record
    carries the validation loss. The budget sets the number of steps (its first ones timed) and may
    end the epoch early when out of time."""
    import torch

    progress = progress_bar(
        budget.steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", "step", accelerator.is_main_process
    )
    tokens_per_step = order.shape[1] * accelerator.num_processes * train_blocks.shape[1]
    network.train()  # a loaded model starts in eval mode: dropout off
    losses = []
    step = 0
    while step < budget.steps_per_epoch and not (step and budget.out_of_time(config.epochs - epoch)):
        steps = budget.steps_per_epoch
        started = time.perf_counter()
        total = 0.0
        for micro in range(config.gradient_accumulation):
            rows = order[step, micro * config.batch_size : (micro + 1) * config.batch_size]
            batch = torch.from_numpy(train_blocks[rows]).to(accelerator.device)
            last = micro == config.gradient_accumulation - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(network):
                loss = network(input_ids=batch, labels=batch).loss / config.gradient_accumulation
                accelerator.backward(loss)
            total += float(loss.detach())
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log.state["step"] += 1
        seconds = time.perf_counter() - started
        speed = tokens_per_step / seconds
        losses.append(total)
        progress.set_postfix(loss=f"{total:.4f}", tokens_per_s=f"{speed:,.0f}", refresh=False)
        progress.update()
        record = {
            "step": log.state["step"],
            "epoch": epoch + (step + 1) / steps,
            "train_loss": total,
            "learning_rate": schedule.get_last_lr()[0],
            "tokens_per_second": speed,
        }
        every = config.validate_every_steps
        if measure_validation and every and (step + 1) % every == 0 and step + 1 < steps:
            record["val_loss"] = measure_validation()
        if accelerator.is_main_process:
            log.log_step(record)
        if on_step:
            on_step(record)
        step += 1
        if budget.step_done(log.state["step"], epoch_end):
            progress.total = budget.steps_per_epoch
    progress.close()
    return losses
