"""One writer per study: ``netzip run`` holds a lease on its study for as long as it runs.

Two processes running the same study would each take the other's live runs for orphans (resume
marks RUNNING runs KILLED) and log duplicate baselines and recipes. So a study run first takes the
study's lease, keyed by experiment and study name:

* on a ``sqlite:///`` (or local file) store, an exclusive ``flock`` on a lock file beside the store,
  ``<store>.netzip-study-<hash>.lock``, holding who took it. The kernel drops the lock when the holder
  dies (even by ``kill -9``), so the next run simply takes it over and resumes;
* on any other store (a tracking server, a database URI), an experiment tag
  ``netzip.lease.<study>`` holding who took it and a heartbeat renewed every
  :data:`HEARTBEAT_S` seconds; a lease whose heartbeat is older than :data:`LEASE_TTL_S` belonged to a
  process that died and is taken over. (An experiment tag rather than a tag on the study run: the
  lease must exist before the study run is chosen or created, or two fresh runs would both create one.)

A second run while the lease is held raises :class:`LeaseError` saying who holds it and since when.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from netzip_mlflow.errors import LeaseError
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.experiments import sqlite_path
from netzip_mlflow.tracking.retry import retry_locked

log = logging.getLogger(__name__)

LEASE_TTL_S = 120.0
"""A server lease whose heartbeat is older than this (s) is taken to belong to a dead process."""
HEARTBEAT_S = 30.0
"""How often (s) the holder of a server lease renews its heartbeat."""
LEASE_TAG_PREFIX = keys.TAG_LEASE_PREFIX


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: host, user, process id, when it was taken and last renewed (unix s)."""

    host: str
    user: str
    pid: int
    since: float
    heartbeat: float
    token: str

    @classmethod
    def me(cls) -> Holder:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in some containers
            user = "?"
        now = time.time()
        return cls(socket.gethostname(), user, os.getpid(), now, now, uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            raw = json.loads(text)
            return cls(str(raw["host"]), str(raw["user"]), int(raw["pid"]), float(raw["since"]), float(raw["heartbeat"]), str(raw["token"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        """``pid 4242 (user alice) on host node1 since 2026-12-02 02:41:07 UTC``."""
        since = datetime.fromtimestamp(self.since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"pid {self.pid} (user {self.user}) on host {self.host} since {since}"


def _busy(study: str, holder: Holder | None, where: str) -> LeaseError:
    who = holder.describe() if holder is not None else "another process (its details are not written yet)"
    return LeaseError(
        f"study {study!s:.100} is already being run by {who} ({where}); only one run of a study may write "
        "at a time: wait for it to end, or stop it and run the same command again to resume"
    )


def _key(experiment: str, study: str) -> str:
    return hashlib.sha256(f"{experiment}\0{study}".encode()).hexdigest()[:16]


class FileLease:
    """The lease as an exclusive ``flock`` on a lock file beside a local store."""

    def __init__(self, lock_path: Path, study: str) -> None:
        self.path = lock_path
        self.study = study
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseError` naming the holder."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = Holder.from_json(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise _busy(self.study, holder, f"lock file {self.path}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released and removed the file between our open and our lock
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, Holder.me().to_json().encode(), 0)
            self._fd = fd
            return
        raise LeaseError(f"cannot take the lock file {self.path} of study {self.study!s:.100}; it keeps changing")

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still locked: a waiter that opened it notices and retries
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class TagLease:
    """The lease as an experiment tag with a heartbeat, for stores shared over the network."""

    def __init__(self, client, experiment_id: str, study: str, ttl_s: float = LEASE_TTL_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.study = study
        self.tag = LEASE_TAG_PREFIX + study
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.me: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Holder | None:
        """The holder written in the tag now (``None`` if there is none)."""
        experiment = retry_locked(self.client.get_experiment, self.experiment_id)
        text = experiment.tags.get(self.tag)
        return Holder.from_json(text) if text else None

    def acquire(self, settle_s: float = 0.5) -> None:
        """Take the lease (or an expired one over) or raise :class:`LeaseError` naming the holder."""
        held = self.current()
        if held is not None and time.time() - held.heartbeat < self.ttl_s:
            raise _busy(self.study, held, f"experiment tag {self.tag}, last heartbeat {time.time() - held.heartbeat:.0f} s ago")
        if held is not None:
            log.warning("taking over the lease of study %s from %s: no heartbeat for %.0f s", self.study, held.describe(), time.time() - held.heartbeat)
        me = Holder.me()
        retry_locked(self.client.set_experiment_tag, self.experiment_id, self.tag, me.to_json())
        time.sleep(settle_s)  # two takers at once: the last write wins, the other one sees it and stops
        winner = self.current()
        if winner is None or winner.token != me.token:
            raise _busy(self.study, winner, f"experiment tag {self.tag}")
        self.me = me
        self._thread = threading.Thread(target=self._beat, name=f"netzip-lease-{self.study}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s) and self.me is not None:
            self.me = Holder(**{**asdict(self.me), "heartbeat": time.time()})
            try:
                retry_locked(self.client.set_experiment_tag, self.experiment_id, self.tag, self.me.to_json())
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("could not renew the lease of study %s: %s", self.study, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    def release(self) -> None:
        if self.me is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            held = self.current()
            if held is not None and held.token == self.me.token:
                self.client.delete_experiment_tag(self.experiment_id, self.tag)
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("could not release the lease of study %s (it expires in %.0f s): %s", self.study, self.ttl_s, exc)
        self.me = None


def lock_file(tracking_uri: str, experiment: str, study: str) -> Path | None:
    """The lock file of a study on a local store (``sqlite:///`` or a file store), else ``None``."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        return db.with_name(f"{db.name}.netzip-study-{_key(experiment, study)}.lock")
    if tracking_uri.startswith("file:") or ("://" not in tracking_uri and not tracking_uri.startswith("databricks")):
        folder = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        return folder / f".netzip-study-{_key(experiment, study)}.lock"
    return None


@contextlib.contextmanager
def study_lease(tracking_uri: str, experiment: str, study: str, experiment_id: str | None = None, client=None) -> Iterator[FileLease | TagLease]:
    """Hold the lease of ``study`` in ``experiment`` for the ``with`` block (see the module doc).

    ``experiment_id`` (and optionally ``client``) is needed for a server store's tag lease.
    """
    path = lock_file(tracking_uri, experiment, study)
    if path is not None:
        lease: FileLease | TagLease = FileLease(path, study)
    else:
        from mlflow.tracking import MlflowClient

        if experiment_id is None:
            raise ValueError("a tag lease needs the experiment id")
        lease = TagLease(client or MlflowClient(tracking_uri), experiment_id, study)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
