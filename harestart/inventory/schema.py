"""The inventory file's schema: what the YAML may say (pydantic models, validated values).

Scalars are strict: a port is an integer (never ``true``, ``22.0`` or ``"22"``), a duration a
number (int or float, never a string or a boolean), a switch a boolean (YAML ``true``/``false``),
and a name, id or account a string (quote numeric ones: ``account: "5919009"``; a bare
``0123`` would be YAML's octal 83, so coercing numbers to strings could name the wrong account).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from harestart.domain.coordination import SCHEMES

# --- value types -----------------------------------------------------------------------------

# Hosts (they reach SQL statements, SSH, MHA's configuration): RFC 1123 host names, IPv4, and
# IPv6 with an optional zone id of plain characters. Matched whole (fullmatch: `$` would let a
# trailing newline through).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ZONE = re.compile(r"[A-Za-z0-9_.-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# MySQL and Linux account names: a letter or '_', then letters, digits, '_', '.', '-'; at most
# 32 (MySQL's limit for user names, and Linux's).
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ABSPATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
# A command is plain words: no quoting, substitution, redirection, pipes or separators.
_WORD = re.compile(r"^[A-Za-z0-9_./:=@%+,-]+$")


# Dotted-quad IPv4 exactly as ``ipaddress`` accepts it (0-255, no leading zero): a fleet's
# usual addresses, passed without building an IPv4Address (a tenth of validating a fleet);
# anything else digits-and-dots still goes to ``ipaddress`` for its verdict and its words.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _hostname(value: str) -> str:
    if ":" in value:
        _ipv6(value)
    elif value.replace(".", "").isdigit() and value.isascii():
        if _IPV4.fullmatch(value):
            return value
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(f"{_short(value)} is not an IPv4 address") from None
    elif not _host_name(value):
        raise ValueError(
            f"{_short(value)} is not a plain hostname or IP address (a host name per RFC 1123: "
            "dot-separated labels of letters, digits and inner '-', at most 63 each and 253 in "
            "all, the last not all digits)"
        )
    return value


def _host_name(value: str) -> bool:
    labels = value.split(".")
    return (
        len(value) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _ipv6(value: str) -> None:
    """An IPv6 address, optionally with a zone id (``fe80::1%eth0``) of letters, digits, '_',
    '.', '-' (``ipaddress`` accepts any zone id: quotes, spaces...)."""
    address, percent, zone = value.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{_short(value)} is not an IPv6 address") from None
    if percent and not _ZONE.fullmatch(zone):
        raise ValueError(f"{_short(value)}: an IPv6 zone id is letters, digits, '_', '.', '-' only")


def _short(value: str) -> str:
    """``value`` quoted on one line (newlines and quotes escaped), long ones cut."""
    return repr(value) if len(value) <= 80 else f"{value[:80]!r}..."


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a plain name (letters, digits, '_', '.', ':', '-'; at most 128)"
        )
    return value


def _user(value: str) -> str:
    if not _USER.fullmatch(value):
        raise ValueError(
            f"{_short(value)} is not a plain user name (a letter or '_', then letters, digits, "
            "'_', '.', '-'; at most 32)"
        )
    return value


def _env(value: str) -> str:
    if not _ENV.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _abspath(value: str) -> str:
    if not _ABSPATH.match(value):
        raise ValueError(f"{value!r} is not a plain absolute path")
    return value


def _command(value: str) -> str:
    words = value.split()
    if not words:
        raise ValueError("the command is empty")
    bad = [w for w in words if not _WORD.match(w)]
    if bad or "\n" in value:
        raise ValueError(
            f"{value!r} contains shell syntax ({' '.join(bad)!s}); a command here is plain words "
            "(put anything more complex in a script on the host and name the script)"
        )
    return " ".join(words)


def _hook_command(value: str) -> str:
    if not value.strip():
        raise ValueError("the hook's command is empty")
    if "\0" in value:
        raise ValueError("the hook's command contains a NUL character")
    return value


def _coordination_url(value: str) -> str:
    if "://" not in value or not value.split("://", 1)[0]:
        raise ValueError(
            "is not a URL: scheme://host:port (etcd3+http://etcd1:2379, "
            "zookeeper://zk1:2181, redis://redis1:6379)"
        )
    try:
        password = urlsplit(value).password
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if password is not None:
        # Never echo the value: it holds a secret.
        raise ValueError(
            "holds credentials: put the password in an environment variable and name it in "
            "coordination.password_env (an inventory never holds the service's password)"
        )
    scheme = value.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        known = ", ".join(s for s in SCHEMES if s != "kazoo")
        raise ValueError(f"unknown scheme {_short(scheme)} (known: {known})")
    try:
        port = urlsplit(value).port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has an invalid port (a number from 1 to 65535 after the host)")
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]
Name = Annotated[str, AfterValidator(_name)]
User = Annotated[str, AfterValidator(_user)]
EnvName = Annotated[str, AfterValidator(_env)]
AbsPath = Annotated[str, AfterValidator(_abspath)]
Command = Annotated[str, AfterValidator(_command)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Lag = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
HookCommand = Annotated[str, AfterValidator(_hook_command)]  # a /bin/sh -c command line
CoordinationUrl = Annotated[str, AfterValidator(_coordination_url)]
Lease = Annotated[float, Field(ge=2, allow_inf_nan=False)]


class _Model(BaseModel):
    # strict: no coercion at all (bool/float/str -> int, str -> float, int -> str, 1 -> bool).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- file schema (what the YAML may say) -----------------------------------------------------


class JumpSpec(_Model):
    host: Hostname
    port: Port | None = None  # the default SSH port, not the layered ssh.port of the hop after it
    user: User | None = None
    key_file: str | None = None


class SshSpec(_Model):
    host: Hostname | None = None
    port: Port | None = None
    user: User | None = None
    key_file: str | None = None
    agent: bool | None = None
    known_hosts: str | None = None
    sudo: bool | None = None
    connect_timeout: Seconds | None = None
    command_timeout: Seconds | None = None
    accept_new_host_keys: bool | None = None  # explicit opt-in: add unknown keys to known_hosts
    jump: JumpSpec | None = None


class MysqlSpec(_Model):
    host: Hostname | None = None
    port: Port | None = None
    user: User | None = None
    password_env: EnvName | None = None
    password_file: str | None = None
    password: str | None = None  # accepted with a warning; prefer password_env/password_file
    connect_timeout: Seconds | None = None
    tunnel: bool | None = None  # reach mysqld through the SSH jump host


class HealthSpec(_Model):
    max_lag: Lag | None = None
    restart_timeout: Seconds | None = None
    catchup_timeout: Seconds | None = None
    failover_timeout: Seconds | None = None
    min_healthy_replicas: Count | None = None


class NodeSpec(_Model):
    name: Name
    address: Hostname | None = None
    # Where the other servers reach it to replicate (switchover); default: its MySQL host.
    replication_host: Hostname | None = None
    replication_port: Port | None = None  # default: its MySQL port
    ssh: SshSpec | None = None
    mysql: MysqlSpec | None = None
    restart_command: Command | None = None


class ManagerSpec(_Model):
    name: Name
    address: Hostname | None = None
    ssh: SshSpec | None = None


class MhaSpec(_Model):
    manager: ManagerSpec
    config: AbsPath
    log: AbsPath | None = None
    stop_command: Command | None = None
    start_command: Command | None = None
    status_command: Command | None = None


class CoordinationSpec(_Model):
    """Where the groups' locks live; absent: the local lock of the machine running harestart."""

    url: CoordinationUrl
    lease: Lease | None = None  # seconds a dead holder keeps the lock
    password_env: EnvName | None = None  # the environment variable holding the password


class HookSpec(_Model):
    """One hook: run on the bastion with ``/bin/sh -c`` (shell syntax allowed), in the
    inventory file's directory."""

    command: HookCommand
    timeout: Seconds | None = None


# A plain string is the hook's command: ``before_node_restart: hooks/drain.sh``.
HookModeName = Literal["event", "persistent"]
HookEntry = HookSpec | HookCommand


# A YAML list of variable names (a tuple: specs are hashed when layered; strict=False lets the
# list in, each name is still a strict string).
EnvNames = Annotated[tuple[EnvName, ...], Field(strict=False)]


class HooksSpec(_Model):
    """Hooks by point; another key is refused (extra="forbid")."""

    before_node_restart: HookEntry | None = None
    after_node_restart: HookEntry | None = None
    before_switch: HookEntry | None = None
    after_switch: HookEntry | None = None
    # Variables of harestart's environment every hook gets on top of the allow-list
    # (harestart.domain.hooks); a name holding a secret is refused (inventory/passthrough.py).
    env_passthrough: EnvNames | None = None
    # event (default): a process per event; persistent: one program per run, each event a JSON
    # line on its stdin (harestart.domain.hook_protocol).
    mode: HookModeName | None = None


class ReplicationSpec(_Model):
    """The account replicas connect with (needed by the switchover strategy only)."""

    user: User | None = None
    password_env: EnvName | None = None
    password_file: str | None = None
    password: str | None = None  # accepted with a warning; prefer password_env/password_file


SourceStrategyName = Literal["restart", "switchover"]
# The servers' kind, for the words `plan` shows without --probe (a run always speaks the words
# of the version it finds): mariadb, or mysql (8.0.22 and later: REPLICA words).
FlavorName = Literal["mariadb", "mysql"]


class DefaultsSpec(_Model):
    ssh: SshSpec | None = None
    mysql: MysqlSpec | None = None
    restart_command: Command | None = None
    health: HealthSpec | None = None
    coordination: CoordinationSpec | None = None
    hooks: HooksSpec | None = None
    replication: ReplicationSpec | None = None
    source_strategy: SourceStrategyName | None = None
    flavor: FlavorName | None = None


class GroupSpec(_Model):
    id: Name
    account: Name
    name: str | None = None
    source: NodeSpec
    replicas: Annotated[list[NodeSpec], Field(min_length=1)]
    mha: MhaSpec
    ssh: SshSpec | None = None
    mysql: MysqlSpec | None = None
    restart_command: Command | None = None
    health: HealthSpec | None = None
    hooks: HooksSpec | None = None  # each point set here replaces the default's
    replication: ReplicationSpec | None = None
    source_strategy: SourceStrategyName | None = None
    candidate: Name | None = None  # the replica a switchover promotes
    flavor: FlavorName | None = None

    @model_validator(mode="after")
    def _candidate_is_a_replica(self) -> GroupSpec:
        if self.candidate is not None and self.candidate not in {r.name for r in self.replicas}:
            raise ValueError(f"candidate {self.candidate!r} is not one of the group's replicas")
        return self


class InventorySpec(_Model):
    version: Literal[1] = 1
    defaults: DefaultsSpec | None = None
    groups: Annotated[list[GroupSpec], Field(min_length=1)]
