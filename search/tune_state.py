"""What Tune's saved experiment state says, read from its file.

Ray Tune writes ``experiment_state-<start time>.json`` into the experiment
folder (``tune/``, ``tune-confirm*/``) while a search runs and once more, forced,
when ``Tuner.fit`` ends -- also after Ctrl-C, *before* it stops the trials'
actors. That last file is what ``Tuner.restore`` (``--resume``) goes on from,
so it is also the reliable answer to "did this experiment end?": the trial
objects ``fit`` returns are stopped after the snapshot, and a trial cut short
by Ctrl-C can come back marked TERMINATED there although its saved state says
RUNNING and the resume continues it.

The file's layout is Tune's (``trial_data``: one ``[trial json, runtime json]``
pair per trial); every reader here fails soft (empty answers) on a file it
cannot parse, and the callers treat that as "no saved state".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Tune's statuses of a trial that has ended; any other (PENDING, RUNNING,
# PAUSED) is continued by a resume.
ENDED = ("TERMINATED", "ERROR")
# How Tune names a trial's checkpoint folders (checkpoint_000000, ...).
_CHECKPOINT_NAME = re.compile(rb"checkpoint_(\d{6})")


@dataclass(frozen=True)
class SavedTrial:
    trial_id: str
    status: str
    folder: str  # the trial's folder under the experiment folder
    checkpoint: str | None  # the newest checkpoint folder the state points at (None: no checkpoint yet)


def newest_state_file(tune_dir: Path) -> Path | None:
    """The state file ``Tuner.restore`` reads: the greatest name (each driver
    session writes its own, named by its start time). Not the newest mtime: a
    restore syncs the folder and leaves every state file with the same one."""
    states = sorted(Path(tune_dir).glob("experiment_state-*.json"), key=lambda p: p.name)
    return states[-1] if states else None


def state_readable(tune_dir: Path) -> bool:
    """Whether Tune's newest experiment state (a JSON file Tune writes in place)
    is whole. A cut-short one makes ``Tuner.restore`` start from no trials."""
    path = newest_state_file(tune_dir)
    if path is None:
        return False
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def saved_trials(tune_dir: Path) -> list[SavedTrial]:
    """The trials of the newest saved state ([] when there is none or it is unreadable)."""
    path = newest_state_file(tune_dir)
    if path is None:
        return []
    try:
        data = json.loads(path.read_text())
        out = []
        for entry in data.get("trial_data", []):
            trial = json.loads(entry[0])
            runtime = json.loads(entry[1]) if len(entry) > 1 else {}
            out.append(SavedTrial(str(trial["trial_id"]), str(trial.get("status", "")),
                                  str(trial.get("relative_logdir") or ""), _newest_checkpoint(runtime)))
        return out
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return []


def _newest_checkpoint(runtime: dict) -> str | None:
    """The newest checkpoint folder named in a trial's pickled checkpoint
    manager. Tune stores the manager as a hex-encoded cloudpickle; rather than
    unpickle Ray's private class, read the folder names out of its bytes (with
    ``num_to_keep=1`` it holds one, plus the same one as "latest")."""
    manager = runtime.get("checkpoint_manager") if isinstance(runtime, dict) else None
    value = manager.get("value") if isinstance(manager, dict) else None
    if not isinstance(value, str):
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    numbers = [int(m.group(1)) for m in _CHECKPOINT_NAME.finditer(raw)]
    return f"checkpoint_{max(numbers):06d}" if numbers else None


def saved_trial_ids(tune_dir: Path) -> set[str]:
    return {t.trial_id for t in saved_trials(tune_dir)}


def unended_in_saved_state(tune_dir: Path) -> list[str]:
    """Ids of the trials the newest saved state has neither terminated nor
    errored: the ones a resume continues."""
    return [t.trial_id for t in saved_trials(tune_dir) if t.status not in ENDED]


def recreate_lost_checkpoints(tune_dir: Path) -> list[SavedTrial]:
    """Give every unended trial whose checkpoint folder is gone an empty one.

    Tune refuses to restore a trial from a checkpoint folder that no longer
    exists ("Could not recover from checkpoint as it does not exist on storage
    anymore"), retries it ``--max-failures`` times and gives up: the trial ends
    as an error although nothing is wrong with it. The folder goes when a driver
    is killed between Tune deleting an older checkpoint and saving the state
    that names the newer one, or when a user tidies the folder by hand. With an
    empty folder Tune hands the trial its checkpoint, our trainable finds no
    saved state in it and trains the trial from its first task: slower, same
    numbers (the run is seeded). Returns the trials it did this for."""
    mended = []
    for trial in saved_trials(tune_dir):
        if trial.status in ENDED or not trial.checkpoint or not trial.folder:
            continue
        folder = Path(tune_dir) / trial.folder / trial.checkpoint
        if not folder.exists():
            folder.mkdir(parents=True)
            mended.append(trial)
    return mended
