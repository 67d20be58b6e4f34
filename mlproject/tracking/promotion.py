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
from datetime import datetime, timedelta, timezone

import mlflow
from mlflow import MlflowClient

from mlproject.config import EvaluateConfig, MlflowConfig, Paths, PromoteConfig, StageFailed
from mlproject.fileio import read_json, write_json
from mlproject.models.evaluation import SCORE_RULE, NotEveryByte
from mlproject.tracking import version_process
from mlproject.tracking.paired_bootstrap import Difference, paired_difference
from mlproject.tracking.registry import PENDING_TAG, document_scores_artifact

CHAMPION, CHALLENGER = "champion", "challenger"
PROMOTION_HEADING = "**Promotion:**"  # the model card's last paragraph
DIFFERENCE_TAG = "promotion.difference_bpb"  # a version's, against the champion it was compared with
# A champion's tag: the validation text (MD5) its registered code could not score document by document.
NO_DOCUMENTS_TAG = "no_document_scores.on"
NOT_COMPARED = "not compared"
# promote.approval: required. The registered model names the version awaiting a person's answer;
# that version carries its deadline, and then who answered, how and when.
AWAITING = "awaiting approval"
DEADLINE_TAG = "promotion.approval_deadline"
APPROVAL_TAG = "promotion.approval"
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


def champion_figures(
    client,
    name: str,
    champion,
    validation_md5: str,
    tokens_dir: str,
    evaluate_config: EvaluateConfig,
    rescore: bool = False,
) -> tuple[float, str, dict | None]:
    """The champion's figure on the current validation text under the current rule, and what each
    of its documents cost there: recorded, or re-scored now (once, then recorded) when the text
    changed, when its document figures were never recorded, or when asked. Its own figure on this
    very text under an older rule raises NotComparable. The documents are None for a champion whose
    registered code gives no cost per token."""
    recorded = recorded_bits_per_byte(champion.tags, validation_md5)
    if recorded is not None and not rescore:
        documents = recorded_documents(client, champion.run_id, validation_md5)
        if documents is not None or champion.tags.get(NO_DOCUMENTS_TAG) == validation_md5:
            return recorded, "recorded", documents
    elif champion.tags.get("validation_md5") == validation_md5 and not rescore:
        raise NotComparable(
            f"champion version {champion.version} was scored before every byte was paid for (its tag "
            f"score_rule is {champion.tags.get('score_rule', 'missing')}, not {SCORE_RULE}); "
            "`mlproject promote --rescore-champion` scores it again under the current rule"
        )
    try:
        figures, documents = version_process.score(
            f"models:/{name}/{champion.version}", mlflow.get_tracking_uri(), tokens_dir, asdict(evaluate_config)
        )
    except NotEveryByte as error:
        raise NotComparable(f"champion version {champion.version}: {error}") from None
    client.set_model_version_tag(name, champion.version, rescored_tag(validation_md5), str(figures["bits_per_byte"]))
    if documents is None:  # never asked again on this text
        client.set_model_version_tag(name, champion.version, NO_DOCUMENTS_TAG, validation_md5)
    else:
        client.log_dict(champion.run_id, documents, document_scores_artifact(validation_md5))
    return figures["bits_per_byte"], "re-scored on the current validation text", documents


def paired(candidate: dict, champion: dict | None, config: PromoteConfig, seed: int) -> Difference | None:
    """The difference of the two models' figures, document by document, with its interval; None
    without the champion's documents. Both are figures of the same text (checked by its MD5)."""
    if champion is None:
        return None
    if candidate["validation_md5"] != champion["validation_md5"] or len(candidate["nats"]) != len(champion["nats"]):
        raise NotComparable(
            f"the candidate's document figures are of validation text {candidate['validation_md5']}, "
            f"the champion's of {champion['validation_md5']}"
        )
    return paired_difference(
        candidate["nats"], champion["nats"], candidate["bytes"], config.bootstrap_resamples, config.confidence, seed
    )


def recorded_documents(client, run_id: str, validation_md5: str) -> dict | None:
    """What each document of this validation text cost the run's model, under the current rule,
    as its register (or an earlier promotion's re-scoring) recorded it."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, document_scores_artifact(validation_md5), folder)
        except (mlflow.exceptions.MlflowException, OSError):
            return None
        documents = read_json(path)
    return documents if documents.get("score_rule") == SCORE_RULE else None


def decide(
    candidate_bpb: float, champion_bpb: float | None, margin: float, difference: Difference | None = None
) -> tuple[bool, str]:
    """Promote only a model better beyond doubt: the whole interval of the difference (candidate
    minus champion) below -`margin`. Without document figures for both (a champion registered
    before them), the figures on the whole text decide, and the reason says so."""
    if champion_bpb is None:
        return True, "first model: no champion yet"
    if difference is not None:
        if difference.high < -margin:
            return True, (
                f"better beyond doubt: {difference.words()} bits per byte "
                f"({difference.confidence:.0%} interval, margin {margin})"
            )
        return False, (
            f"not better beyond doubt: {difference.words()} bits per byte "
            f"({difference.confidence:.0%} interval, margin {margin})"
        )
    without = "; the champion's code gives no figures per document, so no interval"
    if candidate_bpb < champion_bpb - margin:
        return (
            True,
            f"beats the champion by {champion_bpb - candidate_bpb:.4f} bits per byte (margin {margin}){without}",
        )
    return False, f"does not beat the champion by more than {margin} bits per byte{without}"


# What the candidate's samples show (models/writing.py) and the param that limits each.
WRITING_LIMITS = {"copy_share": "max_copy_share", "repeat_share": "max_repeat_share"}


def writing_refusal(writing: dict | None, config: PromoteConfig) -> str | None:
    """Why the candidate may not serve whatever its figure: one line naming the figure of its
    samples over its limit; None when none is."""
    for figure, limit in WRITING_LIMITS.items():
        value = (writing or {}).get(figure)
        if value is not None and value > getattr(config, limit):
            return f"refused: its samples' {figure} is {value:.3f}, above promote.{limit} = {getattr(config, limit)}"
    return None


def await_approval(client: MlflowClient, name: str, candidate: str, config: PromoteConfig) -> datetime:
    """The candidate, better beyond doubt, awaits a person's answer until its deadline (no alias
    moves); a candidate that awaited before it is superseded. The deadline."""
    deadline = datetime.now(timezone.utc) + timedelta(seconds=config.approval_seconds)
    earlier = client.get_registered_model(name).tags.get(PENDING_TAG)
    if earlier and earlier != candidate:
        client.set_model_version_tag(name, earlier, APPROVAL_TAG, f"superseded by version {candidate}, unanswered")
        client.set_model_version_tag(name, earlier, "promotion.decision", f"superseded by version {candidate}")
    client.set_model_version_tag(name, candidate, DEADLINE_TAG, deadline.isoformat(timespec="seconds"))
    client.set_registered_model_tag(name, PENDING_TAG, candidate)
    return deadline


def answer_approval(name: str, version: str, approved: bool, by: str, now: datetime | None = None) -> dict:
    """A person's answer for the version awaiting approval: approved in time, and against the
    champion it was compared with, it becomes champion (the one it displaces, challenger); else it
    is challenger. A version that is not awaiting approval: one line, and nothing changes."""
    client = MlflowClient()
    now = now or datetime.now(timezone.utc)
    with promotion_lock(client, name):
        pending = client.get_registered_model(name).tags.get(PENDING_TAG)
        if pending != str(version):
            awaiting = f"version {pending} is" if pending else "none is"
            raise StageFailed(f"version {version} of {name} is not awaiting approval ({awaiting}); nothing changed")
        tags = client.get_model_version(name, version).tags
        deadline = datetime.fromisoformat(tags[DEADLINE_TAG])
        compared_with = tags.get("promotion.champion_version", "None")
        champion = champion_version(client, name)
        champion_now = str(champion.version) if champion is not None else "None"
        if now > deadline:
            decision, reason = "challenger", f"no answer before its deadline, {deadline:%Y-%m-%d %H:%M} UTC"
        elif not approved:
            decision, reason = "challenger", f"rejected by {by}"
        elif champion_now != compared_with:
            decision, reason = (
                "challenger",
                f"approved by {by}, but the champion is version {champion_now} now, not the version "
                f"{compared_with} it was compared with; the next run compares them",
            )
        else:
            decision, reason = "promoted", f"approved by {by}"
        if decision == "promoted" and champion is not None:
            client.set_registered_model_alias(name, CHALLENGER, champion.version)
        client.set_registered_model_alias(name, CHAMPION if decision == "promoted" else CHALLENGER, version)
        client.delete_registered_model_tag(name, PENDING_TAG)
        client.set_model_version_tag(name, version, APPROVAL_TAG, f"{reason}, at {now:%Y-%m-%d %H:%M:%S} UTC")
        client.set_model_version_tag(name, version, "promotion.decision", decision)
    return {
        "version": str(version),
        "decision": decision,
        "reason": reason,
        "champion_now": str(version) if decision == "promoted" else champion_now,
    }


def with_promotion(card: str, report: dict) -> str:
    """The version's model card with its promotion's paragraph (replacing an earlier one)."""
    kept = card.split(PROMOTION_HEADING)[0].rstrip()
    champion = report["champion_version"]
    against = f" against champion version {champion}" if champion else ""
    return f"{kept}\n\n{PROMOTION_HEADING} {report['decision']}{against}: {report['reason']}.\n"


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
    seed: int = 0,
) -> dict:
    client = MlflowClient()
    name = mlflow_config.model_name
    candidate = read_json(paths.registered)["version"]
    metrics = read_json(paths.metrics)
    with promotion_lock(client, name):
        report = decide_and_move_aliases(
            client, name, candidate, metrics, config, evaluate_config, paths, rescore_champion, seed
        )
    for key in ("decision", "reason", "candidate_bits_per_byte", "champion_bits_per_byte", "champion_version"):
        client.set_model_version_tag(name, candidate, f"promotion.{key}", str(report[key]))
    if report["difference"]:  # as `mlproject compare` shows it: -0.0031 [-0.0072, +0.0009]
        client.set_model_version_tag(name, candidate, DIFFERENCE_TAG, Difference(**report["difference"]).words())
    card = client.get_model_version(name, candidate).description or ""
    client.update_model_version(name, candidate, description=with_promotion(card, report))
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
    seed: int,
) -> dict:
    champion = champion_version(client, name)
    champion_bpb, source, decision, difference, deadline = None, None, None, None, None
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
                champion_bpb, source, documents = champion_figures(
                    client, name, champion, metrics["validation_md5"], paths.tokens, evaluate_config, rescore_champion
                )
                difference = paired(read_json(paths.document_scores), documents, config, seed)
            promoted, reason = decide(metrics["bits_per_byte"], champion_bpb, config.min_improvement_bpb, difference)
            refusal = writing_refusal(metrics.get("writing"), config)
            if refusal:
                promoted, reason = False, f"{refusal} (on bits per byte: {reason})"
            decision = "promoted" if promoted else "challenger"
            if promoted and config.approval == "required":
                decision, deadline = AWAITING, await_approval(client, name, candidate, config)
                reason = (
                    f"{reason}; awaits approval until {deadline:%Y-%m-%d %H:%M} UTC (promote.approval_timeout = "
                    f"{config.approval_timeout}): mlproject approve {candidate}, or reject it"
                )
        except NotComparable as error:
            decision, reason = NOT_COMPARED, str(error)
    if decision == "promoted" and champion is not None and str(champion.version) != candidate:
        # The champion it displaced is now the best that does not serve: never an alias lost.
        client.set_registered_model_alias(name, CHALLENGER, champion.version)
    if decision in ("promoted", "challenger"):
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
        "difference": difference.record() if difference else None,
        "writing": metrics.get("writing"),
        "approval_deadline": deadline.isoformat(timespec="seconds") if deadline else None,
        "decision": decision,
        "reason": reason,
        "champion_now": candidate if decision == "promoted" else str(champion.version) if champion else None,
    }
    return report
