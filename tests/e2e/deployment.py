"""
A real Airflow 3 deployment for the end-to-end tests, started from scratch in temporary folders.

:class:`PostgresServer` runs a private PostgreSQL cluster (``initdb`` + ``pg_ctl``, owned by the
``postgres`` user when we are root) on a free loopback port; :class:`AirflowDeployment` points a
temporary ``AIRFLOW_HOME`` at it and runs ``airflow api-server``, ``scheduler`` (LocalExecutor),
``dag-processor`` and ``triggerer`` as separate process groups, each logging to a file.
Everything listens on 127.0.0.1 only, and :meth:`AirflowDeployment.stop` ends every process it
started (and their children) even when a test failed half-way.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
import requests

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
#: The components a deployment runs, in start order.
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")
_PR_SET_PDEATHSIG = 1
SETUP_HINT = "Run `make e2e` (or `bash scripts/e2e-setup.sh`) to install PostgreSQL and Chromium."


class E2EError(AssertionError):
    """An end-to-end step did not happen in time; the message says which and what was seen last."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5, on_timeout: str = ""
) -> T:
    """
    Call ``probe`` until it returns something truthy, and return that.

    :param what: what we are waiting for, for the error message.
    :param probe: returns a truthy value when done; exceptions count as "not yet".
    :param timeout: seconds before giving up with :class:`E2EError`.
    :param interval: seconds between calls.
    :param on_timeout: extra context for the error message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
        except Exception as err:  # the component may still be starting
            result, last = None, f"{type(err).__name__}: {err}"
        else:
            last = result if result is not None else last
        if result:
            return result
        if time.monotonic() > deadline:
            raise E2EError(
                f"Timed out after {timeout:g} s waiting for {what}; last seen: {last!r}. {on_timeout}"
            )
        time.sleep(interval)


def _kill_tree(pid: int, sig: int) -> list[psutil.Process]:
    """Send ``sig`` to a process, its process group and all its descendants; return them."""
    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
    return procs


def stop_process_tree(pid: int, grace: float = 15.0) -> None:
    """SIGTERM a process group and its descendants; SIGKILL whatever is left after ``grace`` seconds."""
    procs = _kill_tree(pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def tail(path: Path, lines: int = 80) -> str:
    """Return the last ``lines`` lines of a text file (or a note that it does not exist)."""
    if not path.exists():
        return f"<{path} does not exist>"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _die_with_parent(sig: int) -> Callable[[], None]:
    """
    Return a ``preexec_fn`` that makes the child receive ``sig`` when the test process dies.

    Linux's ``PR_SET_PDEATHSIG``: a pytest killed by a CI timeout leaves no server behind. It is
    set in the child after any change of user, which would clear it. No-op elsewhere than Linux.
    """
    prctl = None
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


# -- PostgreSQL -------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """Return the folder of Debian's PostgreSQL server binaries (the newest version installed)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise E2EError(f"PostgreSQL's initdb was not found. {SETUP_HINT}")


def _postgres_ids() -> tuple[int, int] | None:
    """The uid and gid to run PostgreSQL as: ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise E2EError(f"No 'postgres' user to own the database cluster. {SETUP_HINT}") from None
    return entry.pw_uid, entry.pw_gid


@dataclass
class PostgresServer:
    """
    A private PostgreSQL server in a temporary folder, on a free port of 127.0.0.1.

    ``postgres`` runs in the foreground as a child of the test process, with a parent-death
    signal: even if pytest is killed outright, the server shuts down instead of lingering.
    As root, the cluster belongs to the ``postgres`` user that Debian's package creates.
    """

    user: str = "airflow"
    database: str = "airflow"
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="octopods-e2e-pg-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self) -> dict[str, Any]:
        ids = _postgres_ids()
        return {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(
            [str(postgres_bindir() / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
            **self._as_owner(),
        )
        if result.returncode != 0:
            raise E2EError(
                f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"PostgreSQL log:\n{tail(self.log_file)}"
            )
        return result

    def start(self) -> PostgresServer:
        """Create the cluster, start the server (fsync off: throw-away data) and the database."""
        ids = _postgres_ids()
        if ids is not None:
            os.chown(self.root, *ids)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(postgres_bindir() / "postgres"), "-D", str(data), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"},
                cwd=self.root,
                start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGQUIT),  # SIGQUIT: immediate shutdown
                **self._as_owner(),
            )

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise E2EError(f"PostgreSQL exited at start:\n{tail(self.log_file)}")
            self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), timeout=10)
            return True

        wait_for("PostgreSQL to accept connections", ready, timeout=60, interval=0.2)
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
        return self

    def create_database(self, name: str) -> str:
        """Create another database on this server (a DAG's own data, beside Airflow's); return its name."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return name

    def dump(self) -> bytes:
        """Return a plain-SQL dump of the whole database (every table, every row)."""
        cmd = [str(postgres_bindir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        return subprocess.run([*cmd, self.database], capture_output=True, check=True, timeout=120).stdout

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and delete its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


#: The reaper: sleeps until the test process dies (parent-death signal) or the deployment stops,
#: then SIGKILLs every process whose AIRFLOW_HOME is the deployment's. A scheduler stopping waits
#: for its LocalExecutor workers, which may wait on an API server already gone; this does not.
_REAPER = """
import os, signal, sys, time
import psutil

def reap(*_):
    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid != me and proc.environ().get("AIRFLOW_HOME") == sys.argv[1]:
                proc.kill()
        except psutil.Error:
            pass
    sys.exit(0)

signal.signal(signal.SIGTERM, reap)
while True:
    time.sleep(3600)
"""


# -- Airflow ----------------------------------------------------------------------------------


@dataclass
class AirflowDeployment:
    """
    Airflow's API server, scheduler (LocalExecutor), DAG processor and triggerer on one database.

    :param database_url: the metadata database (PostgreSQL).
    :param dag_files: the DAG files to copy into the DAGs folder.
    :param parallelism: executor slots; 1 proves that a deferred sensor frees its slot.
    :param extra_env: more configuration, as ``AIRFLOW__SECTION__KEY`` variables.
    """

    database_url: str
    dag_files: Iterable[Path]
    parallelism: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="octopods-e2e-home-")))
    api_port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _reaper: subprocess.Popen[bytes] | None = None
    _token: str | None = None
    _session: requests.Session | None = None

    def __post_init__(self) -> None:
        from cryptography.fernet import Fernet

        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        (self.home / "components").mkdir(exist_ok=True)
        for source in self.dag_files:
            shutil.copy(source, self.home / "dags" / source.name)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({"admin": self.admin_password}))
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW", "_AIRFLOW")) and name not in {"PYTHONPATH"}
        }
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                # A task's supervisor notices its process exited within this many seconds (5 by
                # default): every task run, deferral included, ends 4 s sooner.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # A killed triggerer's triggers go to a new one once its heartbeat is this old.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
                "NO_PROXY": "*",
                "no_proxy": "*",
                **self.extra_env,
            }
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log_path(self, component: str) -> Path:
        """The file a component's stdout and stderr go to (one file across restarts)."""
        return self.home / "components" / f"{component}.log"

    # -- CLI and processes --

    def cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        """
        Run ``airflow <args>`` against this deployment and return the result.

        :param args: the CLI arguments.
        :param timeout: seconds before giving up.
        :param check: raise :class:`E2EError` (with the output) on a non-zero exit.
        """
        result = subprocess.run(
            [str(AIRFLOW_BIN), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise E2EError(
                f"`airflow {' '.join(args[:3])} ...` exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def start_component(self, name: str, kind: str | None = None) -> subprocess.Popen[bytes]:
        """
        Start one component (``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``).

        :param name: the component's name here (its log file's too), e.g. ``triggerer-2``.
        :param kind: the Airflow command, when ``name`` is not one (a second triggerer).
        """
        args = {
            "api-server": [
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.api_port),
                "--workers",
                "1",
            ],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }.get(kind or name, [kind or name])
        with self.log_path(name).open("ab") as log:
            log.write(f"\n===== starting {name} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [str(AIRFLOW_BIN), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGTERM),
            )
        self.processes[name] = proc
        return proc

    def kill_component(self, name: str) -> None:
        """SIGKILL a component and all its processes, as a crash or an OOM kill would."""
        proc = self.processes.pop(name)
        procs = _kill_tree(proc.pid, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        proc.wait(10)

    def migrate(self) -> AirflowDeployment:
        """Create the metadata database's schema (``airflow db migrate``)."""
        self.cli("db", "migrate", timeout=300)
        return self

    def start(self) -> AirflowDeployment:
        """Start every component, wait until all report healthy, and log in to the REST API."""
        self._reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(self.home)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM),
        )
        for name in COMPONENTS:
            self.start_component(name)
        self.wait_healthy(timeout=180)
        self.login()
        return self

    def check_alive(self) -> None:
        """Raise :class:`E2EError` if a component process has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise E2EError(
                    f"Airflow's {name} exited with {proc.returncode}:\n{tail(self.log_path(name), 60)}"
                )

    def health(self) -> dict[str, Any]:
        """Return ``/api/v2/monitor/health`` (no authentication needed)."""
        response = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def wait_healthy(self, timeout: float, components: Iterable[str] = COMPONENTS) -> None:
        """Wait until the health endpoint reports the scheduler, triggerer and DAG processor healthy."""
        wanted = {"scheduler", "triggerer", "dag_processor"} & {c.replace("-", "_") for c in components}

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            health = self.health()
            ok = all((health.get(c) or {}).get("status") == "healthy" for c in wanted)
            return health if ok else None

        wait_for("Airflow's components to report healthy", probe, timeout, interval=1.0)

    def stop(self) -> None:
        """Stop every component (process groups and children), whatever state they are in."""
        for name in reversed(list(self.processes)):
            stop_process_tree(self.processes.pop(name).pid)
        if self._reaper is not None:  # sweeps up any straggler, e.g. an orphaned task process
            self._reaper.terminate()
            self._reaper.wait(30)
        if self._session is not None:
            self._session.close()

    def component_logs(self, lines: int = 80) -> str:
        """Return the tail of each component's log, for a failure report."""
        parts = [
            f"----- {p.stem} ({p}) -----\n{tail(p, lines)}"
            for p in sorted(self.log_path("x").parent.iterdir())
        ]
        return "\n".join(parts)

    def all_log_text(self) -> bytes:
        """Return the bytes of every log file: components, task and trigger logs."""
        return b"\n".join(p.read_bytes() for p in sorted(self.home.rglob("*.log")) if p.is_file())

    # -- REST API --

    def login(self) -> None:
        """Get a JWT for the admin user from ``/auth/token``, as an API client would."""
        response = requests.post(
            f"{self.base_url}/auth/token",
            json={"username": "admin", "password": self.admin_password},
            timeout=30,
        )
        if response.status_code != 201:
            raise E2EError(f"/auth/token answered {response.status_code}: {response.text[:500]}")
        self._token = response.json()["access_token"]
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {self._token}"

    @property
    def token(self) -> str:
        assert self._token is not None, "call login() first"
        return self._token

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] = 200, **kwargs: Any) -> Any:
        """
        Call the REST API (``/api/v2`` + ``path``) and return its decoded JSON.

        :param method: the HTTP method.
        :param path: the path after ``/api/v2``.
        :param expect: the status code(s) that count as success.
        """
        assert self._session is not None, "call login() first"
        response = self._session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in expected:
            raise E2EError(f"{method} /api/v2{path} answered {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def wait_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id`` and the API serves it."""

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            errors = self.api("GET", "/importErrors")
            if errors.get("import_errors"):
                raise E2EError(f"DAG import errors: {errors['import_errors']}")
            return dict(self.api("GET", f"/dags/{dag_id}", expect=(200, 404)) or {}) or None

        return wait_for(f"DAG {dag_id!r} to be parsed", probe, timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger a DAG run through the REST API; return its run id."""
        self.wait_dag(dag_id)
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def wait_state(
        self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 120
    ) -> dict[str, Any]:
        """Wait until a task instance is in one of ``states``; return it."""

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            ti = self.task_instance(dag_id, run_id, task_id)
            return ti if ti["state"] in states else None

        return wait_for(
            f"{dag_id}.{task_id} ({run_id}) to be {'/'.join(sorted(states))}",
            probe,
            timeout,
            on_timeout=f"Component logs under {self.home / 'components'}.",
        )

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """Wait until a DAG run is finished; return its state."""

        def probe() -> str | None:
            self.check_alive()
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return str(state) if state in {"success", "failed"} else None

        return wait_for(f"DAG run {dag_id}/{run_id} to finish", probe, timeout)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """Return a task's XCom value, decoded."""
        entry = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def wait_log(
        self, dag_id: str, run_id: str, task_id: str, text: str, timeout: float = 30, try_number: int = 1
    ) -> str:
        """Wait until a task's log contains ``text`` (the end of a log can lag its state); return it."""

        def probe() -> str | None:
            log = self.task_log(dag_id, run_id, task_id, try_number)
            return log if text in log else None

        return wait_for(f"{text!r} in the log of {dag_id}.{task_id} ({run_id})", probe, timeout)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """Return a task's log (``/logs`` endpoint), one event per line."""
        body = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        lines = []
        for item in body.get("content", []):
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in {"event", "timestamp", "level", "logger"}}
                lines.append(f"{item.get('level', '')} {item.get('event', '')} {extra if extra else ''}")
            else:
                lines.append(str(item))
        return "\n".join(lines)
