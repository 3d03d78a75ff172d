"""The files of one run's backups: names, the newest readable one, retention, clean-up.

`backup-<epoch>-<step>.zip` (ember.train.checkpoint's format) is one backup; an FSDP run's
also has `backup-<epoch>-<step>.shards/` beside it, written first and named by the zip, whose
rename completes the backup. A backup that cannot be used is renamed `*.corrupt` (kept for
inspection, never loaded), and the one before it is used instead.
"""
import os
import re
import shutil
import warnings
from pathlib import Path

from ember.train.checkpoint import BackupFileError, check_backup_state, read_backup, shards_name, write_backup

_NAME = re.compile(r"backup-(\d{6})-(\d{9})\.zip")


class BackupFolder:
    def __init__(self, directory):
        self.directory = Path(directory)

    def path_for(self, epoch: int, step: int) -> Path:
        return self.directory / f"backup-{epoch:06d}-{step:09d}.zip"

    def backups(self) -> list:
        """The backup files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(tuple(map(int, m.groups())), p) for p in self.directory.iterdir() if (m := _NAME.fullmatch(p.name))]
        return [p for _, p in sorted(found)]

    def read(self, path) -> dict:
        """A backup's state, checked to be usable (BackupFileError otherwise)."""
        state = read_backup(path)
        check_backup_state(state, path)  # also: shards can only be the zip's own sibling
        if state["shards"]:
            _check_shards(path)
        return state

    def write(self, path, state: dict) -> None:
        write_backup(path, state)

    def newest_readable(self):
        """(state, path) of the newest usable backup, setting unusable ones aside; (None, None) if none."""
        for path in reversed(self.backups()):
            try:
                return self.read(path), path
            except BackupFileError as error:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                warnings.warn(f"{error}. Set it aside as {aside.name}; resuming from the previous backup.",
                              RuntimeWarning, stacklevel=4)
        return None, None

    def keep_newest(self, keep: int, written: Path) -> None:
        """Remove all but the `keep` newest backups, never the one just `written`."""
        for old in self.backups()[:-keep]:
            if old != written:
                remove_backup(old)

    def remove_all(self) -> None:
        for path in self.backups():  # oldest first: an interruption here leaves the newest
            remove_backup(path)
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()

    def remove_temporaries(self) -> None:
        # A kill between writing and renaming leaves ember.io's temporary file behind; one between
        # a sharded backup's shards and its zip leaves shards that no backup names.
        if self.directory.is_dir():
            for path in self.directory.glob(".backup-*.zip.*.tmp"):
                path.unlink(missing_ok=True)
            for shards in self.directory.glob("backup-*.shards*"):
                if shards.suffix == ".partial" or not shards.with_suffix(".zip").exists():
                    shutil.rmtree(shards, ignore_errors=True)


def shards_of(path: Path) -> Path:
    return Path(path).with_name(shards_name(path))


def remove_backup(path: Path) -> None:
    """The zip first: a backup whose shards are gone must not stay behind looking complete."""
    path.unlink(missing_ok=True)
    shutil.rmtree(shards_of(path), ignore_errors=True)


def _check_shards(path: Path) -> None:
    """A sharded backup's folder must exist and its metadata be readable without running code."""
    from ember.distributed.checkpoint import CheckpointFileError, read_checkpoint_metadata

    try:
        read_checkpoint_metadata(shards_of(path))
    except FileNotFoundError:
        raise BackupFileError(f"{path} names the shards {shards_of(path).name}, which are missing") from None
    except CheckpointFileError as error:
        raise BackupFileError(f"{path}'s shards are unusable: {error}") from None
