"""``harestart serve``: the API, its background jobs and the process around them.

The HTTP transport (uvicorn, the request deadline, the connection cap, TLS) is
``harestart.http.transport``; the ASGI application around the pure ``Api`` (worker pool,
access log) is ``harestart.http.asgi``. This module loads the tokens and the TLS context,
watches the inventory file, builds the API with its background observer and restarter, and
handles SIGTERM/SIGINT:

- the first signal stops accepting work (every request is answered 503), asks running restarts
  to stop at their next safe point (their InterruptFlag: the current action finishes, the
  journal says where), waits for them, closes the listener and exits 0;
- a second signal abandons at once (exit 130); ``harestart resume`` continues from the journal.

At start it raises the soft open-files limit to the hard one and sizes the connection cap
below it (``transport.connection_cap``): a flood of connections cannot take the descriptors a
restart in flight needs for its SSH and MySQL sessions.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from harestart.domain.group import Group
from harestart.errors import ExitCode, HarestartError, UsageError
from harestart.http.api import Api, InventoryUnavailable, TokenMap, parse_tokens
from harestart.http.asgi import DEFAULT_MAX_WORKERS
from harestart.http.transport import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT,
    ApiServer,
    connection_cap,
    raise_open_files_limit,
)
from harestart.inventory.load import load_inventory
from harestart.inventory.model import Inventory
from harestart.views.metrics import GroupSnapshot, Metrics, snapshot_of

if TYPE_CHECKING:
    from harestart.engine.run import Environment
    from harestart.http.jobs import BackgroundObserver, BackgroundRestarter

__all__ = ["ApiServer", "InventoryFile", "build_api", "load_tokens", "serve", "tls_context"]

log = structlog.get_logger("harestart.http.server")

DEFAULT_OBSERVE_INTERVAL = 10.0  # seconds between two background observations of a group
STARTUP_OBSERVE_WAIT = 5.0  # at most this long before listening, for the first observations


# --- configuration ---------------------------------------------------------------------------


def load_tokens(path: str | None, env_name: str | None) -> TokenMap:
    """Tokens from ``--tokens FILE`` or ``--tokens-env NAME`` (exactly one of them)."""
    if (path is None) == (env_name is None):
        raise UsageError("serve needs exactly one of --tokens FILE or --tokens-env NAME")
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            mode = p.stat().st_mode
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the tokens file: {exc.strerror}") from None
        if mode & 0o077:
            log.warning("api.tokens.readable_by_others", file=path, mode=oct(mode & 0o777))
        return parse_tokens(text, path)
    value = os.environ.get(env_name) if env_name is not None else None
    if not value:
        raise UsageError(f"environment variable {env_name} (--tokens-env) is not set or empty")
    return parse_tokens(value, f"${env_name}")


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context for ``--tls-cert PATH --tls-key PATH`` (both or neither):
    the standard library's ``ssl``, TLS 1.2 at least, its default ciphers."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("serve needs both --tls-cert PATH and --tls-key PATH, or neither")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise UsageError(
            f"cannot load the TLS certificate {cert} with the key {key}: {reason} (both must be "
            "PEM files, the key unencrypted and matching the certificate)"
        ) from None
    return ctx


class InventoryFile:
    """The inventory given to ``serve``, re-read when the file changes (size, mtime, inode).

    A file that can no longer be loaded makes ``current()`` raise InventoryUnavailable (503)
    until it can be loaded again; the last good inventory is not used in the meantime, since
    it may describe hosts the operator meant to take out. ``secret_env``: variables holding a
    secret besides the inventory's own (the tokens' ``--tokens-env``), refused in
    ``hooks.env_passthrough`` at every load.
    """

    def __init__(
        self,
        path: str,
        initial: Inventory,
        *,
        prepare: Callable[[Inventory], Inventory] = lambda inv: inv,
        secret_env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self._prepare = prepare
        self._secret_env = dict(secret_env or {})
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._inventory: Inventory | None = initial
        self._problem: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> Inventory:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    loaded = load_inventory(self.path, secret_env=self._secret_env)
                    self._inventory = self._prepare(loaded)
                    self._problem = None
                    log.info("api.inventory.reloaded", file=self.path)
                except HarestartError as exc:
                    self._inventory = None
                    self._problem = str(exc).splitlines()[0]
                    log.error("api.inventory.unavailable", file=self.path, error=str(exc))
            if self._inventory is None:
                raise InventoryUnavailable(
                    f"the inventory cannot be loaded ({self._problem}); fix the file and retry"
                )
            return self._inventory


# --- harestart serve -------------------------------------------------------------------------


def serve(
    inventory: Inventory,
    *,
    host: str,
    port: int,
    tokens: TokenMap,
    accept_new_host_keys: bool = False,
    observe_interval: float = DEFAULT_OBSERVE_INTERVAL,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_workers: int = DEFAULT_MAX_WORKERS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    tls: ssl.SSLContext | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).

    ``tls`` (see ``tls_context``): serve HTTPS instead of HTTP. ``max_connections`` is
    lowered to what the open-files limit leaves beside a restart's descriptors.
    ``secret_env``: see ``InventoryFile``."""
    cap = _sized_cap(max_connections)
    stopping = threading.Event()
    api, restarter, observer = build_api(
        inventory,
        tokens,
        stopping,
        accept_new_host_keys=accept_new_host_keys,
        observe_interval=observe_interval,
        secret_env=secret_env,
    )
    try:
        server = ApiServer(
            api,
            host,
            port,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
            max_workers=max_workers,
            max_connections=cap,
            tls=tls,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    _warn_if_exposed(host, tls)
    with _stop_signals(stopping) as signals:
        observer.start()
        _first_observations(observer, stopping)
        server.start()
        _log_listening(server, inventory, tokens, tls)
        try:
            _until_stopped(stopping, signals, restarter)
        finally:
            server.stop()
            observer.stop()
    log.info("api.stopped")
    return int(ExitCode.OK)


def _warn_if_exposed(host: str, tls: ssl.SSLContext | None) -> None:
    if not _is_loopback(host) and tls is None:
        log.warning(
            "api.not_loopback",
            host=host,
            note="tokens travel in clear text: use --tls-cert/--tls-key or a TLS reverse proxy",
        )


def _sized_cap(max_connections: int) -> int:
    """The connection cap under the open-files limit (raised to the hard one first)."""
    open_files = raise_open_files_limit()
    cap = connection_cap(max_connections, open_files)
    if cap < max_connections:
        log.warning(
            "api.connections.capped",
            requested=max_connections,
            cap=cap,
            open_files_limit=open_files,
            note="raise the open-files limit (ulimit -n, LimitNOFILE=) to allow more",
        )
    return cap


def _first_observations(observer: BackgroundObserver, stopping: threading.Event) -> None:
    """Listen once every group was observed (or STARTUP_OBSERVE_WAIT passed): the first
    answers then carry observations rather than observed_at null."""
    deadline = time.monotonic() + STARTUP_OBSERVE_WAIT
    while not observer.observed_all() and time.monotonic() < deadline:
        if stopping.wait(0.05):
            return


def _log_listening(
    server: ApiServer, inventory: Inventory, tokens: TokenMap, tls: ssl.SSLContext | None
) -> None:
    bound_host, bound_port = server.address
    scheme = "https" if tls is not None else "http"
    log.info(
        "api.listening",
        host=bound_host,
        port=bound_port,
        scheme=scheme,
        url=f"{scheme}://{bound_host}:{bound_port}/v1.0/",
        contract=f"{scheme}://{bound_host}:{bound_port}/openapi.json",
        inventory=inventory.path,
        groups=len(inventory.groups),
        tokens=len(tokens),
        max_connections=server.guard.max_connections,
        request_timeout_s=server.guard.request_timeout,
    )


def build_api(
    inventory: Inventory,
    tokens: TokenMap,
    stopping: threading.Event,
    *,
    accept_new_host_keys: bool = False,
    observe_interval: float = DEFAULT_OBSERVE_INTERVAL,
    env: Environment | None = None,
    secret_env: Mapping[str, str] | None = None,
) -> tuple[Api, BackgroundRestarter, BackgroundObserver]:
    """The API of ``serve``: background restarts and observations, and metrics in a
    registry of its own. ``env``: the hosts and state directory (default: the real ones).
    ``secret_env``: see ``InventoryFile``."""
    from harestart.engine.run import observe
    from harestart.http.jobs import BackgroundObserver, BackgroundRestarter

    def prepare(inv: Inventory) -> Inventory:
        return inv.accepting_new_host_keys() if accept_new_host_keys else inv

    # paramiko logs failed handshakes of the background observations through the standard
    # logging module, which without a handler prints them on stderr between serve's JSON lines;
    # the observations report them (ssh_error).
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    inventory_file = InventoryFile(
        inventory.path, prepare(inventory), prepare=prepare, secret_env=secret_env
    )
    metrics = Metrics(http=True)
    restarter = BackgroundRestarter(inventory.path, metrics=metrics, env=env)

    def context_of(g: Group) -> object:  # what Api._show compares with
        view = restarter.view(g)
        return (view.verdict(g).state, view.current_step)

    observer = BackgroundObserver(
        lambda: inventory_file.current().groups,
        observe=None if env is None else (lambda g: observe(g, env=env)),
        interval=observe_interval,
        timeout=max(60.0, 3 * observe_interval),
        context_of=context_of,
    )
    restarter.on_finished = observer.refresh
    metrics.watch_groups(lambda: group_snapshots(inventory_file, restarter, observer))
    api = Api(
        tokens=tokens,
        inventory=inventory_file,
        restarter=restarter,
        observer=observer,
        shutting_down=stopping.is_set,
        metrics=metrics,
    )
    return api, restarter, observer


def group_snapshots(
    inventory: InventoryFile, restarter: BackgroundRestarter, observer: BackgroundObserver
) -> Iterable[GroupSnapshot]:
    """Every group's gauges at a scrape: judged like GET /ha/{id}, from the latest observation
    (never a new one) and the lock and journal."""
    try:
        groups = inventory.current().groups
    except InventoryUnavailable:
        return []
    out = []
    for g in groups:
        view = restarter.view(g)
        observed = observer.latest(g)
        state = observed.state if observed is not None else None
        out.append(
            snapshot_of(
                g.account,
                g.id,
                view.verdict(g, state).state,
                state,
                lock_held=view.facts.lock.held,
                observation_age_s=observed.age_s if observed is not None else None,
            )
        )
    return out


@contextlib.contextmanager
def _stop_signals(stopping: threading.Event) -> Iterator[list[str]]:
    """SIGINT/SIGTERM set ``stopping`` (the names are collected); a second one abandons."""
    signals: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        signals.append(name)
        if len(signals) > 1:
            raise KeyboardInterrupt(name)  # second signal: abandon at once
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _until_stopped(
    stopping: threading.Event, signals: list[str], restarter: BackgroundRestarter
) -> None:
    """Wait for a stop signal, then let running restarts stop at their next safe point."""
    while not stopping.wait(0.2):
        pass
    log.warning("api.stopping", signal=signals[0])
    running = restarter.stop_all(signals[0])
    if running:
        log.warning("api.stopping.waiting", running_restarts=running)
    while not restarter.wait(timeout=0.2):
        pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
