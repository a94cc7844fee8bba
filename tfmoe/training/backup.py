"""Run directories that lose nothing and mix nothing: epoch backups, atomic writes, one run per directory.

- `EpochBackup`: at the end of every epoch, saves the model (weights and optimizer state) to
  `backup/epoch_NNNNNN.weights.h5`. The file is written under a temporary name, flushed to
  disk and renamed, so a kill never leaves a truncated backup under the real name; the two
  newest backups are kept.
- `restore_latest`: loads the newest backup that opens and says which one it loaded; a damaged
  newest file falls back to the one before, and the message names both. Pass the returned
  epoch to `model.fit(initial_epoch=...)`.
- `RunDirectoryLock`: an exclusive lock on the output directory, so a second process on the same
  directory stops at once with the pid of the one that holds it.
- `check_resume_config`: a rerun in a directory that holds another run's config is refused
  before anything is written, naming the keys that differ.
- `write_json_atomic`, `save_weights_atomic`: temporary file, fsync, rename.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re

import keras

BACKUP_PATTERN = re.compile(r"^epoch_(\d{6})\.weights\.h5$")
KEEP_BACKUPS = 2
LOCK_FILE = ".lock"


def _fsync_and_replace(tmp, path):
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json_atomic(path, value):
    """Writes `value` as JSON to `path` so that a kill leaves the old file or the new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, default=str)
    _fsync_and_replace(tmp, path)


def save_weights_atomic(model, path):
    """`model.save_weights(path)` through a temporary file: a kill never truncates `path`."""
    tmp = f"{path[: -len('.weights.h5')]}.tmp{os.getpid()}.weights.h5"
    model.save_weights(tmp)
    _fsync_and_replace(tmp, path)


def backup_path(backup_dir, epoch):
    return os.path.join(backup_dir, f"epoch_{epoch:06d}.weights.h5")


def list_backups(backup_dir):
    """`[(epoch, path)]` of the backups in `backup_dir`, newest first."""
    if not os.path.isdir(backup_dir):
        return []
    found = [
        (int(m.group(1)), os.path.join(backup_dir, name))
        for name in os.listdir(backup_dir)
        if (m := BACKUP_PATTERN.match(name))
    ]
    return sorted(found, reverse=True)


def backed_up_epoch(backup_dir):
    """Epochs completed by the newest backup in `backup_dir` (0 if none; not checked for damage)."""
    backups = list_backups(backup_dir)
    return backups[0][0] if backups else 0


def restore_latest(model, backup_dir, log=print):
    """Loads the newest backup of `backup_dir` that opens into `model` (compiled, built).

    Returns the number of completed epochs it holds (0: nothing to restore). Every backup
    that fails to load is named in a line of `log`, as is the one loaded.

    Raises:
      RuntimeError: backups exist but none of them loads.
    """
    backups = list_backups(backup_dir)
    if not backups:
        return 0
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    damaged = []
    for epoch, path in backups:
        try:
            model.load_weights(path)
        except (OSError, ValueError) as error:
            damaged.append(path)
            log(
                f"warning: backup {path} does not load ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); trying the one before"
            )
            continue
        log(
            f"Resuming from the backup {path}: epoch {epoch} done, training continues at step "
            f"{int(model.optimizer.iterations.numpy()) if model.optimizer is not None else '?'}"
        )
        return epoch
    raise RuntimeError(
        f"no backup in {backup_dir} loads (damaged: {', '.join(damaged)}); "
        "remove the directory to start over"
    )


class EpochBackup(keras.callbacks.Callback):
    """Saves weights and optimizer state to `backup_dir` at the end of every epoch, atomically.

    Keeps the `keep` newest backups. Resume with `restore_latest` and `fit(initial_epoch=...)`.
    """

    def __init__(self, backup_dir, keep=KEEP_BACKUPS):
        super().__init__()
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1, got {keep}.")
        self.backup_dir = backup_dir
        self.keep = int(keep)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        save_weights_atomic(self.model, backup_path(self.backup_dir, epoch + 1))
        for _, old in list_backups(self.backup_dir)[self.keep :]:
            os.remove(old)


class RunDirectoryLock:
    """Exclusive lock on a run directory, held while the run lasts (released on exit or kill).

    Raises:
      RuntimeError: another process holds the lock (its pid in the message).
    """

    def __init__(self, directory):
        self.directory = directory
        self._fd = None

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RuntimeError(
                f"{self.directory} is in use by another run (pid {holder}); "
                "wait for it to finish or choose another --output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def config_differences(saved, current, prefix=""):
    """Dotted keys whose values differ between two JSON-like dicts (missing keys included)."""
    keys = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def check_resume_config(path, current, ignore=()):
    """Refuses to reuse a run directory whose saved config (JSON at `path`) differs from `current`.

    `current` is compared after a JSON round trip (tuples become lists). Keys in `ignore`
    (top-level or dotted) may differ.

    Raises:
      ValueError: the saved config differs; the message names the differing keys.
    """
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not readable JSON ({error}); choose another --output_dir or remove it"
        ) from None
    current = json.loads(json.dumps(current, default=str))
    differing = [
        key
        for key in config_differences(saved, current)
        if not any(key == i or key.startswith(f"{i}.") for i in ignore)
    ]
    if differing:
        shown = ", ".join(differing[:8]) + (
            f" and {len(differing) - 8} more" if len(differing) > 8 else ""
        )
        raise ValueError(
            f"{os.path.dirname(path) or '.'} holds a run with a different config "
            f"({shown} differ); resume with the same flags or choose another --output_dir"
        )
