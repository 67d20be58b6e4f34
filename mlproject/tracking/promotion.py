"""Promote stage: the champion alias moves only to a version that scores better.

A new version becomes champion only if its bits per byte beats the champion's on the same
validation text, both measured under the same rule (evaluation.SCORE_RULE: every byte paid for);
a champion scored on other data is re-scored first. A figure of another rule is never compared:
the aliases stay as they are and the report says why. A worse model never wins, whatever its kind:
both figures come through the same language-model interface.

Promotions of one model are serialised by a lock in the registry itself, so two runs that finish
at once (on any machines sharing the tracking server) end with the better one champion and the
other challenger, never the reverse.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict

import mlflow
from mlflow import MlflowClient

from mlproject.config import EvaluateConfig, MlflowConfig, Paths, PromoteConfig, StageFailed
from mlproject.fileio import read_json, write_json
from mlproject.models.evaluation import SCORE_RULE, NotEveryByte
from mlproject.tracking import version_process

CHAMPION, CHALLENGER = "champion", "challenger"
NOT_COMPARED = "not compared"
LOCK_SUFFIX = ".promotion-lock"
# A holder on another machine is presumed dead after this long (one on this machine as soon as its
# process is gone): longer than re-scoring the slowest champion on the validation text takes.
STALE_LOCK_SECONDS = 3600
LOCK_WAIT_SECONDS = 2 * STALE_LOCK_SECONDS  # then a living holder is presumed stuck


class NotComparable(Exception):
    """Two figures that do not measure the same thing; the message says why, in one line."""


def champion_version(client: MlflowClient, name: str):
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def rescored_tag(validation_md5: str) -> str:
    """The champion's tag holding its figure re-scored on another validation text."""
    return f"bits_per_byte.{SCORE_RULE}.on.{validation_md5}"


def recorded_bits_per_byte(tags: dict, validation_md5: str) -> float | None:
    """The version's figure on this validation text under the current rule, if it has one."""
    if (
        tags.get("validation_md5") == validation_md5
        and tags.get("score_rule") == SCORE_RULE
        and "bits_per_byte" in tags
    ):
        return float(tags["bits_per_byte"])
    return float(tags[rescored_tag(validation_md5)]) if rescored_tag(validation_md5) in tags else None


def champion_bits_per_byte(
    client,
    name: str,
    champion,
    validation_md5: str,
    tokens_dir: str,
    evaluate_config: EvaluateConfig,
    rescore: bool = False,
) -> tuple[float, str]:
    """The champion's figure on the current validation text under the current rule: recorded, or
    re-scored now when the text changed (or when asked). Its own figure on this very text under an
    older rule raises NotComparable."""
    recorded = recorded_bits_per_byte(champion.tags, validation_md5)
    if recorded is not None and not rescore:
        return recorded, "recorded"
    if champion.tags.get("validation_md5") == validation_md5 and not rescore:
        raise NotComparable(
            f"champion version {champion.version} was scored before every byte was paid for (its tag "
            f"score_rule is {champion.tags.get('score_rule', 'missing')}, not {SCORE_RULE}); "
            "`mlproject promote --rescore-champion` scores it again under the current rule"
        )
    try:
        figures = version_process.score(
            f"models:/{name}/{champion.version}", mlflow.get_tracking_uri(), tokens_dir, asdict(evaluate_config)
        )
    except NotEveryByte as error:
        raise NotComparable(f"champion version {champion.version}: {error}") from None
    client.set_model_version_tag(name, champion.version, rescored_tag(validation_md5), str(figures["bits_per_byte"]))
    return figures["bits_per_byte"], "re-scored on the current validation text"


def decide(candidate_bpb: float, champion_bpb: float | None, margin: float) -> tuple[bool, str]:
    """Promote only a strictly better model that also beats the champion by `margin`."""
    if champion_bpb is None:
        return True, "first model: no champion yet"
    if candidate_bpb < champion_bpb - margin:
        return True, f"beats the champion by {champion_bpb - candidate_bpb:.4f} bits per byte (margin {margin})"
    return False, f"does not beat the champion by more than {margin} bits per byte"


def lock_holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def holder_gone(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (OSError, KeyError, ValueError):
            pass
    return time.time() - float(holder.get("since", 0)) > STALE_LOCK_SECONDS


@contextmanager
def promotion_lock(client: MlflowClient, name: str, wait_seconds: float = LOCK_WAIT_SECONDS, poll_seconds: float = 1.0):
    """Held while one promotion of model `name` reads the champion and moves the aliases. The lock
    is a registered model named `<name>.promotion-lock`: the store creates a name only once, which
    makes taking it a compare-and-set on any store (SQLite, PostgreSQL, the tracking server)."""
    lock = f"{name}{LOCK_SUFFIX}"
    deadline = time.monotonic() + wait_seconds
    said = False
    while True:
        try:
            client.create_registered_model(
                lock,
                description=f"held while a promotion of {name} decides; deleted after",
                tags={"holder": json.dumps(lock_holder())},
            )
            break
        except mlflow.exceptions.MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        holder = read_holder(client, lock)
        # Read again just before deleting: another waiter may have taken it over meanwhile.
        if holder is not None and holder_gone(holder) and read_holder(client, lock) == holder:
            print(
                f"promote: the promotion lock's holder ({holder.get('host')}, process {holder.get('pid')}) is gone; "
                "taking the lock",
                flush=True,
            )
            release(client, lock)
            continue
        if not said:
            print(f"promote: waiting for the promotion lock {lock} (held by {holder})", flush=True)
            said = True
        if time.monotonic() > deadline:
            raise StageFailed(
                f"promote: the promotion lock {lock} stayed held by {holder} for {wait_seconds:.0f} s; "
                f"if no promotion runs, delete the registered model {lock}"
            )
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        release(client, lock)


def read_holder(client: MlflowClient, lock: str) -> dict | None:
    try:
        return json.loads(client.get_registered_model(lock).tags.get("holder") or "{}")
    except mlflow.exceptions.MlflowException:  # released meanwhile
        return None


def release(client: MlflowClient, lock: str) -> None:
    try:
        client.delete_registered_model(lock)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def promote(
    config: PromoteConfig,
    mlflow_config: MlflowConfig,
    evaluate_config: EvaluateConfig,
    paths: Paths,
    rescore_champion: bool = False,
) -> dict:
    client = MlflowClient()
    name = mlflow_config.model_name
    candidate = read_json(paths.registered)["version"]
    metrics = read_json(paths.metrics)
    with promotion_lock(client, name):
        report = decide_and_move_aliases(
            client, name, candidate, metrics, config, evaluate_config, paths, rescore_champion
        )
    for key in ("decision", "reason", "candidate_bits_per_byte", "champion_bits_per_byte", "champion_version"):
        client.set_model_version_tag(name, candidate, f"promotion.{key}", str(report[key]))
    write_json(paths.promotion, report)
    return report


def decide_and_move_aliases(
    client: MlflowClient,
    name: str,
    candidate: str,
    metrics: dict,
    config: PromoteConfig,
    evaluate_config: EvaluateConfig,
    paths: Paths,
    rescore_champion: bool,
) -> dict:
    champion = champion_version(client, name)
    champion_bpb, source, decision = None, None, None
    if champion is not None and str(champion.version) == candidate:
        champion_bpb, source = metrics["bits_per_byte"], "the candidate itself"
        decision, reason = "promoted", "already the champion"
    elif metrics.get("score_rule") != SCORE_RULE:
        decision, reason = (
            NOT_COMPARED,
            (
                f"version {candidate}'s figure was not measured under the rule "
                f"{SCORE_RULE} (every byte paid for); run the evaluate stage again"
            ),
        )
    else:
        try:
            if champion is not None:
                champion_bpb, source = champion_bits_per_byte(
                    client, name, champion, metrics["validation_md5"], paths.tokens, evaluate_config, rescore_champion
                )
            promoted, reason = decide(metrics["bits_per_byte"], champion_bpb, config.min_improvement_bpb)
            decision = "promoted" if promoted else "challenger"
        except NotComparable as error:
            decision, reason = NOT_COMPARED, str(error)
    if decision == "promoted" and champion is not None and str(champion.version) != candidate:
        # The champion it displaced is now the best that does not serve: never an alias lost.
        client.set_registered_model_alias(name, CHALLENGER, champion.version)
    if decision != NOT_COMPARED:
        client.set_registered_model_alias(name, CHAMPION if decision == "promoted" else CHALLENGER, candidate)
    report = {
        "model_name": name,
        "candidate_version": candidate,
        "candidate_bits_per_byte": metrics["bits_per_byte"],
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_bits_per_byte": champion_bpb,
        "champion_figure": source,
        "validation_md5": metrics["validation_md5"],
        "score_rule": metrics.get("score_rule"),
        "margin": config.min_improvement_bpb,
        "decision": decision,
        "reason": reason,
        "champion_now": candidate if decision == "promoted" else str(champion.version) if champion else None,
    }
    return report
