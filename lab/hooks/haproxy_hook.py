#!/usr/bin/env python3
"""harestart hook for HAProxy (the lab's example; Python 3 standard library only).

One script for the four hook points; the point comes from ``$HARESTART_HOOK`` (or the first
argument). It talks to HAProxy's runtime API at ``$HAPROXY_API``: ``host:port`` (the lab
publishes it on 127.0.0.1) or the path of a unix socket (``/run/haproxy/admin.sock``). Server
names in HAProxy are the inventory's node names; the backends are ``writer`` (every db node,
only the source enabled) and ``readers`` (the replicas), as lab/entrypoint.sh writes them.

  before_node_restart  node in ``readers``: ``set server readers/<node> state drain``, then wait
                       (polling ``show stat``) until its current sessions reach 0; exit 1 on
                       timeout. The source (not in ``readers``) has nothing to drain: restarted
                       in place, the writer cannot move (that is what the switchover is for).
  after_node_restart   node in ``readers``: ``set server readers/<node> state ready``, then wait
                       until HAProxy's health check reports it UP. The current writer: wait
                       until HAProxy sees it UP again.
  before_switch        check that both the old and the new source are servers of ``writer``,
                       so a misnamed node stops the run before anything is switched.
  after_switch         move the writer: ``set server writer/<new> state ready``, then
                       ``... writer/<old> state maint`` and ``shutdown sessions server
                       writer/<old>``, in one API request (see move_writer for the order).

``haproxy_hook.py status`` (not a hook) prints every server of both backends and exits 0 when
each one not in maintenance is UP (1 otherwise): a readiness check for scripts.

Persistent mode (``hooks: {mode: persistent}`` in the inventory: harestart sets
``HARESTART_HOOK_MODE=persistent``, or ``haproxy_hook.py persistent``): one process for the
whole run, reading harestart's JSON lines on stdin (see ``serve``): it answers the hello with
the four points, then each event with ``{"id": ID, "ok": true, "message": ...}`` or ``{"id":
ID, "ok": false, "message": why}`` (the event's id echoed), doing exactly what the per-event
hook does for that point, and exits at the end of its input. Its messages go to stderr (stdout
is the protocol's). It opens one runtime API connection per request as the per-event hook
does: HAProxy closes an idle CLI session after its ``stats timeout`` (10 s by default), events
are seconds to minutes apart, and a loopback connection costs well under a millisecond; what
the persistent mode saves is the start of a Python process per event.

Environment (set by harestart): HARESTART_HOOK, HARESTART_NODE, HARESTART_OLD_SOURCE,
HARESTART_NEW_SOURCE (and HARESTART_ACCOUNT, _GROUP, _RUN_ID, _NODE_HOST, _ROLE, _STRATEGY,
printed for the record). Settings: HAPROXY_API (required unless --api), HAPROXY_WRITER_BACKEND
(writer), HAPROXY_READER_BACKEND (readers), HAPROXY_DRAIN_TIMEOUT (30 s), HAPROXY_UP_TIMEOUT
(30 s): keep both below the hook's own timeout in the inventory. HAPROXY_DRAIN_CUT=1: when
the drain times out, cut the sessions left (``shutdown sessions server``) and succeed instead of
failing - for clients with long-lived pooled connections, which a drain alone never empties.
Run by harestart, it sees only the settings the inventory lists in hooks.env_passthrough
(lab-haproxy.yml lists them) or its command line sets.

Exit codes: 0 done, 1 the hook failed (harestart stops the run), 2 usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

HOOKS = ("before_node_restart", "after_node_restart", "before_switch", "after_switch")
POLL_INTERVAL = 0.2
PROTOCOL = 1  # the persistent mode's version (harestart.domain.hook_protocol)


class HookError(Exception):
    """The hook cannot do its job; the message says why (printed, exit 1)."""


@dataclass(frozen=True)
class Server:
    """One server line of ``show stat``."""

    backend: str
    name: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2", "DOWN 1/2", "no check", ...
    sessions: int  # scur: current sessions

    @property
    def up(self) -> bool:
        """UP for good: a server still UP but failing its checks shows "UP 1/2"."""
        return self.status in ("UP", "no check")

    @property
    def in_maint(self) -> bool:
        return self.status.startswith("MAINT")


def parse_stat(text: str) -> dict[tuple[str, str], Server]:
    """``show stat`` CSV -> {(backend, server): Server}; the FRONTEND/BACKEND lines are skipped."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("# "):
        raise HookError(f"unexpected 'show stat' answer: {text[:200]!r}")
    reader = csv.DictReader([lines[0][2:], *lines[1:]])
    servers: dict[tuple[str, str], Server] = {}
    for row in reader:
        name = row.get("svname") or ""
        if name in ("FRONTEND", "BACKEND", ""):
            continue
        backend = row.get("pxname") or ""
        scur = row.get("scur") or "0"
        servers[(backend, name)] = Server(
            backend=backend,
            name=name,
            status=(row.get("status") or "").strip(),
            sessions=int(scur) if scur.isdigit() else 0,
        )
    return servers


def api_address(spec: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """``host:port`` -> (AF_INET, (host, port)); a path (or anything without a port) -> unix."""
    host, sep, port = spec.rpartition(":")
    if sep and port.isdigit() and not spec.startswith(("/", ".")):
        return socket.AF_INET, (host or "127.0.0.1", int(port))
    return socket.AF_UNIX, spec


class Api:
    """HAProxy's runtime API, one connection per request (its non-interactive mode)."""

    def __init__(self, spec: str, timeout: float = 5.0) -> None:
        self.spec = spec
        self.timeout = timeout

    def request(self, command: str) -> str:
        family, address = api_address(self.spec)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(address)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HookError(f"HAProxy runtime API at {self.spec} failed: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def command(self, command: str) -> None:
        """A command that answers nothing when it succeeds (``set server``, ``shutdown``)."""
        answer = self.request(command).strip()
        if answer:
            raise HookError(f"HAProxy refused {command!r}: {answer}")

    def servers(self) -> dict[tuple[str, str], Server]:
        return parse_stat(self.request("show stat"))

    def server(self, backend: str, name: str) -> Server | None:
        return self.servers().get((backend, name))


def wait_server(
    api: Api,
    backend: str,
    name: str,
    done: Callable[[Server], bool],
    what: str,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Server:
    """Poll ``show stat`` until ``done(server)`` or ``timeout`` seconds pass (HookError)."""
    deadline = clock() + timeout
    while True:
        server = api.server(backend, name)
        if server is None:
            raise HookError(f"{backend}/{name} disappeared from HAProxy")
        if done(server):
            return server
        if clock() >= deadline:
            raise HookError(
                f"timed out after {timeout:g}s waiting for {backend}/{name} to be {what} "
                f"(now {server.status}, {server.sessions} current sessions)"
            )
        sleep(POLL_INTERVAL)


@dataclass(frozen=True)
class Settings:
    writer: str
    readers: str
    drain_timeout: float
    up_timeout: float
    drain_cut: bool = False  # at the drain timeout, cut the sessions left instead of failing

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def seconds(name: str, default: float) -> float:
            raw = env.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                raise HookError(f"{name} must be a number of seconds (got {raw!r})") from None

        return cls(
            writer=env.get("HAPROXY_WRITER_BACKEND") or "writer",
            readers=env.get("HAPROXY_READER_BACKEND") or "readers",
            drain_timeout=seconds("HAPROXY_DRAIN_TIMEOUT", 30.0),
            up_timeout=seconds("HAPROXY_UP_TIMEOUT", 30.0),
            drain_cut=env.get("HAPROXY_DRAIN_CUT", "") in ("1", "yes", "true"),
        )


def required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise HookError(f"{name} is not set (harestart sets it for this hook)")
    return value


def before_node_restart(api: Api, cfg: Settings, env: Mapping[str, str]) -> str:
    node = required(env, "HARESTART_NODE")
    if api.server(cfg.readers, node) is None:
        return f"{node} is not in backend {cfg.readers}: nothing to drain"
    api.command(f"set server {cfg.readers}/{node} state drain")
    try:
        server = wait_server(
            api, cfg.readers, node, lambda s: s.sessions == 0, "without sessions", cfg.drain_timeout
        )
    except HookError as exc:
        if not cfg.drain_cut:
            raise
        api.command(f"shutdown sessions server {cfg.readers}/{node}")
        return f"{cfg.readers}/{node} drained; sessions left cut (HAPROXY_DRAIN_CUT): {exc}"
    return f"{cfg.readers}/{node} drained ({server.status}, 0 current sessions)"


def after_node_restart(api: Api, cfg: Settings, env: Mapping[str, str]) -> str:
    node = required(env, "HARESTART_NODE")
    done = []
    if api.server(cfg.readers, node) is not None:
        api.command(f"set server {cfg.readers}/{node} state ready")
        wait_server(api, cfg.readers, node, lambda s: s.up, "UP", cfg.up_timeout)
        done.append(f"{cfg.readers}/{node} ready and UP")
    writer = api.server(cfg.writer, node)
    if writer is not None and not writer.in_maint:
        wait_server(api, cfg.writer, node, lambda s: s.up, "UP", cfg.up_timeout)
        done.append(f"{cfg.writer}/{node} UP")
    return "; ".join(done) or f"{node} is in no backend this hook manages"


def switch_servers(api: Api, cfg: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    old = required(env, "HARESTART_OLD_SOURCE")
    new = required(env, "HARESTART_NEW_SOURCE")
    servers = api.servers()
    missing = [n for n in (old, new) if (cfg.writer, n) not in servers]
    if missing:
        raise HookError(f"not a server of backend {cfg.writer}: {', '.join(missing)}")
    return old, new


def before_switch(api: Api, cfg: Settings, env: Mapping[str, str]) -> str:
    # Not drained here: with the old writer drained the backend has no usable server and HAProxy
    # refuses new connections for the whole switch; left alone, they reach the old source until
    # harestart makes it read-only, which is as early as any write has to stop.
    old, new = switch_servers(api, cfg, env)
    return f"{cfg.writer}/{old} and {cfg.writer}/{new} present; the writer moves after the switch"


def move_writer(api: Api, writer: str, old: str, new: str) -> None:
    """Ready the new writer first, then put the old one in maintenance and cut its sessions.

    In this order the backend always has an enabled server: for the microseconds between the
    two commands a new connection may still reach the old source (read-only by now, so a write
    fails and is retried by the client), whereas the other order leaves the backend empty and
    HAProxy refuses every connection in that window. Leaving maintenance, HAProxy counts the new
    server UP at once and checks it straight away. One request keeps the window tiny; cutting
    the old writer's sessions makes pooled clients reconnect to the new one instead of failing
    on a read-only server until they notice.
    """
    api.command(
        f"set server {writer}/{new} state ready; "
        f"set server {writer}/{old} state maint; "
        f"shutdown sessions server {writer}/{old}"
    )


def after_switch(api: Api, cfg: Settings, env: Mapping[str, str]) -> str:
    old, new = switch_servers(api, cfg, env)
    move_writer(api, cfg.writer, old, new)
    wait_server(api, cfg.writer, new, lambda s: s.up, "UP", cfg.up_timeout)
    return f"writer moved: {cfg.writer}/{new} UP, {cfg.writer}/{old} in maintenance"


ACTIONS: dict[str, Callable[[Api, Settings, Mapping[str, str]], str]] = {
    "before_node_restart": before_node_restart,
    "after_node_restart": after_node_restart,
    "before_switch": before_switch,
    "after_switch": after_switch,
}


def status(api: Api, cfg: Settings) -> tuple[bool, str]:
    """(every server of the two backends not in maintenance is UP, one line per server)."""
    servers = [s for key, s in sorted(api.servers().items()) if key[0] in (cfg.writer, cfg.readers)]
    lines = [f"{s.backend}/{s.name}: {s.status} ({s.sessions} sessions)" for s in servers]
    ok = bool(servers) and all(s.up or s.in_maint for s in servers)
    return ok, "\n".join(lines)


def context(env: Mapping[str, str]) -> str:
    keys = ("GROUP", "NODE", "ROLE", "OLD_SOURCE", "NEW_SOURCE", "STRATEGY", "RUN_ID")
    return " ".join(
        f"{k.lower()}={env[f'HARESTART_{k}']}" for k in keys if env.get(f"HARESTART_{k}")
    )


def event_env(event: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A persistent-mode event as the per-event hook's environment: ``point`` is
    HARESTART_HOOK, every other key HARESTART_<KEY> (the script's settings stay as they are)."""
    out = dict(env)
    for key, value in event.items():
        if isinstance(value, str):
            out["HARESTART_HOOK" if key == "point" else f"HARESTART_{key.upper()}"] = value
    return out


def handle(line: str, spec: str, env: Mapping[str, str], log: IO[str]) -> dict[str, Any]:
    """One event line -> its answer (its id echoed); the hook's message also goes to ``log``."""
    event = json.loads(line)
    if not isinstance(event, dict):
        return {"ok": False, "message": f"not an event: {line[:200]!r}"}
    answer: dict[str, Any] = {"id": event.get("id")}
    if event.get("point") not in ACTIONS:
        return {**answer, "ok": False, "message": f"not an event this hook handles: "
                f"{event.get('point')!r}"}  # fmt: skip
    hook_env = event_env(event, env)
    hook = hook_env["HARESTART_HOOK"]
    try:
        message = ACTIONS[hook](Api(spec), Settings.from_env(hook_env), hook_env)
    except HookError as exc:
        print(f"haproxy_hook {hook} [{context(hook_env)}]: FAILED: {exc}", file=log, flush=True)
        return {**answer, "ok": False, "message": str(exc)}
    print(f"haproxy_hook {hook} [{context(hook_env)}]: {message}", file=log, flush=True)
    return {**answer, "ok": True, "message": message}


def serve(spec: str, env: Mapping[str, str], stdin: IO[str], stdout: IO[str], log: IO[str]) -> int:
    """The persistent mode: answer harestart's hello, then each event, until stdin ends."""
    hello = json.loads(stdin.readline() or "{}")
    if hello.get("harestart-hook") != PROTOCOL:
        print(f"haproxy_hook: not harestart's hello (version {PROTOCOL}): {hello}", file=log)
        return 2
    stdout.write(json.dumps({"harestart-hook": PROTOCOL, "capabilities": list(HOOKS)}) + "\n")
    stdout.flush()
    for line in stdin:
        try:
            answer = handle(line, spec, env, log)
        except (ValueError, AttributeError) as exc:  # not JSON, or not an object
            answer = {"ok": False, "message": f"unreadable event: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "hook",
        nargs="?",
        choices=(*HOOKS, "status", "persistent"),
        help="default: $HARESTART_HOOK, or persistent when $HARESTART_HOOK_MODE says so",
    )
    parser.add_argument(
        "--api", help="HAProxy runtime API, host:port or socket path ($HAPROXY_API)"
    )
    args = parser.parse_args(argv)
    persistent = env.get("HARESTART_HOOK_MODE") == "persistent" and not args.hook
    hook = "persistent" if persistent else args.hook or env.get("HARESTART_HOOK", "")
    spec = args.api or env.get("HAPROXY_API", "")
    if hook not in (*ACTIONS, "status", "persistent"):
        parser.error(f"no hook point: give one of {', '.join(HOOKS)} or set HARESTART_HOOK")
    if not spec:
        parser.error("no runtime API: set HAPROXY_API (host:port or a unix socket path) or --api")
    if hook == "persistent":
        return serve(spec, env, sys.stdin, sys.stdout, sys.stderr)
    try:
        if hook == "status":
            ok, text = status(Api(spec), Settings.from_env(env))
            print(text)
            return 0 if ok else 1
        message = ACTIONS[hook](Api(spec), Settings.from_env(env), env)
    except HookError as exc:
        print(f"haproxy_hook {hook} [{context(env)}]: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"haproxy_hook {hook} [{context(env)}]: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
