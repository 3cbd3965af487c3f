"""The seed's HTTP API, without HTTP: routing, authentication, handlers and faults.

``harestart serve`` answers the Cloud Databases calls for HA instances that harestart can
perform, with the same paths, headers, bodies and status codes:

- ``POST /v1.0/{accountId}/ha/{haId}/action`` ``{"restart": {}}`` -> ``202``, empty body;
- ``GET  /v1.0/{accountId}/ha/{haId}`` -> ``{"ha_instance": {...}}``;
- ``GET  /v1.0/{accountId}/ha?limit=N&marker=ID`` -> ``{"ha_instances": [...], "links": [...]}``;
- ``GET  /openapi.json`` (no token) -> the contract, ``openapi.json`` next to this module;
- ``GET  /metrics`` (an operator's token) -> the Prometheus text format (docs/reference/metrics.md).

A token is a tenant's (its account: that account's groups only, in every answer, and no
operator detail: a running restart shows as "a restart runs since ...") or an operator's
(``{operator: true}`` in the tokens file: ``/metrics``, every account, lock holders and paths).

``ROUTES`` is the table of those resources (path template, method, token or not, handler); the
contract documents exactly them (``tests/unit/test_openapi.py`` checks both ways), so adding a
resource is one line there and its operation in ``openapi.json``.

Everything here works on a plain :class:`Request` and returns a :class:`Response`; the HTTP
server (``harestart.http.server``) only translates bytes. Side effects come in through small
Protocols (:class:`Restarter`, :class:`Observer`, :class:`InventorySource`), so the unit tests
drive this module with fakes. Faults use the seed's shape, one root key named after the fault:
``{"itemNotFound": {"code": 404, "name": "itemNotFound", "message": "...", "request_id": "..."}}``
(python-troveclient reads ``message`` under the first key).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote

import structlog

from harestart.domain.group import Group
from harestart.domain.judge import RunFacts, Verdict, judge_group
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.plan.model import PlanOptions
from harestart.domain.secret import Secret
from harestart.engine.prepare import available_passwords
from harestart.errors import HarestartError, UsageError
from harestart.inventory.model import Inventory
from harestart.inventory.yamlsafe import YamlProblem, load_located
from harestart.views.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from harestart.views.metrics import Metrics
from harestart.views.status import run_documents

log = structlog.get_logger("harestart.http.api")

VERSION = "v1.0"
MAX_BODY = 8 * 1024  # bytes; {"restart": {}} is 15
DEFAULT_LIMIT = 20  # page size of GET /ha without ?limit (the seed's paging limit)
MAX_LIMIT = 100  # a larger ?limit is refused with 413 overLimit

# HA actions of the seed API that harestart knows but does not perform (501 notImplemented).
KNOWN_ACTIONS = frozenset(
    {"resize", "resize_volumes", "resize_flavor", "add_replica", "remove_replica", "upgrade"}
)

# The seed's fault names (Cloud Databases "Faults" table).
FAULTS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    413: "overLimit",
    422: "unprocessableEntity",
    500: "instanceFault",
    501: "notImplemented",
    503: "serviceUnavailable",
    505: "httpVersionNotSupported",  # not the seed's: an HTTP version other than 1.0 and 1.1
}

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# --- requests, responses, faults -------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string, still percent-encoded
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-case
    body: bytes | None = b""  # None: not read because it was over MAX_BODY
    body_length: int = 0  # the declared Content-Length
    request_id: str = ""
    operator: bool = False  # set by Api once an operator's token was checked (never by HTTP)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    account: str | None = None  # the authenticated account, for the access log

    @classmethod
    def json(cls, status: int, doc: Any, **kw: Any) -> Response:
        return cls(status, json.dumps(doc, indent=2).encode() + b"\n", **kw)


class ApiError(Exception):
    """A fault: answered as ``{"<name>": {"code", "name", "message"}}`` with that status."""

    def __init__(self, code: int, message: str, *, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.code = code
        self.name = FAULTS[code]
        self.message = message
        self.headers = headers


def fault_response(
    code: int, message: str, request_id: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    name = FAULTS[code]
    doc = {name: {"code": code, "name": name, "message": message, "request_id": request_id}}
    return Response.json(code, doc, headers=headers)


BEYOND = 10**18  # what a count of more than 18 digits reads as: over every limit here


def parse_count(raw: str) -> int | None:
    """A non-negative decimal count as HTTP writes one (``limit``, ``Content-Length``): ASCII
    digits only, since ``str.isdigit`` also accepts ``'²'`` (which ``int`` refuses) and other
    scripts' digits; None when ``raw`` is not one. More than 18 digits read as BEYOND (``int``
    refuses strings over 4300 digits)."""
    if not raw or not raw.isascii() or not raw.isdigit():
        return None
    return BEYOND if len(raw) > 18 else int(raw)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def request_id_for(given: str | None) -> str:
    """The client's X-Request-Id when it is a plain token, else a new one."""
    if given and _REQUEST_ID.match(given):
        return given
    return "req-" + uuid.uuid4().hex


# --- tokens ----------------------------------------------------------------------------------


class Operator(enum.Enum):
    """The value of an operator's entry in the tokens file, ``{operator: true}``: ``/metrics``
    and every account's groups, with what only operators see (a lock holder's pid, user and
    host, the server's paths)."""

    OPERATOR = "operator"


OPERATOR = Operator.OPERATOR


@dataclass(frozen=True)
class Caller:
    """Who a valid token is: a tenant (its account) or an operator (``account`` None)."""

    account: str | None

    @property
    def operator(self) -> bool:
        return self.account is None


class TokenMap:
    """X-Auth-Token -> account (a tenant) or OPERATOR. The keys are tokens, kept as ``Secret``
    (never rendered), or ``sha256:<hex>`` digests of tokens (so the file on disk holds no
    usable secret). A given token's SHA-256 digest is compared with ``hmac.compare_digest``
    against every entry, so the time taken does not depend on which token matched or how much
    of it."""

    def __init__(self, tokens: Mapping[str, str | Operator]) -> None:
        self._entries = [
            (token_digest(t), Secret(t), None if a is OPERATOR else str(a))
            for t, a in tokens.items()
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def caller(self, token: str) -> Caller | None:
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        for digest, _secret, account in self._entries:
            if hmac.compare_digest(digest, given):
                found = Caller(account)
        return found

    def account(self, token: str) -> str | None:
        """The tenant account of ``token`` (None: not a token, or an operator's)."""
        caller = self.caller(token)
        return None if caller is None else caller.account


DIGEST_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def token_digest(entry: str) -> bytes:
    """The SHA-256 digest a tokens-file key stands for: ``sha256:<hex>`` as written, or the
    digest of a plain token."""
    if entry.startswith(DIGEST_PREFIX) and _HEX_DIGEST.match(entry[len(DIGEST_PREFIX) :]):
        return bytes.fromhex(entry[len(DIGEST_PREFIX) :])
    return hashlib.sha256(entry.encode()).digest()


def parse_tokens(text: str, where: str) -> TokenMap:
    """A YAML or JSON mapping ``token: account`` (a tenant) or ``token: {operator: true}`` (an
    operator; JSON is YAML), read with the inventories' safe loader and stricter still: no
    anchors or aliases, no duplicate keys, no tags or merge keys. Every problem is reported
    with its line; no message ever shows a token."""
    try:
        located = load_located(text, aliases=False, hide_keys=True)
    except YamlProblem as exc:
        detail = exc.message.removeprefix("not valid YAML: ")
        raise UsageError(
            _at(where, exc.line, f"not YAML or JSON ({detail}); expected a mapping token: account")
        ) from None
    if located.problems:
        problems = sorted(located.problems, key=lambda p: p[0] or 0)
        n = len(problems)
        raise UsageError(
            f"{where}: {n} problem{'s' if n != 1 else ''} in the tokens file\n"
            + "\n".join(f"  {_at(where, line, msg)}" for line, msg in problems)
        )
    doc = located.data
    if not isinstance(doc, dict) or not doc:
        raise UsageError(_at(where, 1, "expected a non-empty mapping token: account"))
    tokens: dict[str, str | Operator] = {}
    seen: dict[bytes, int] = {}  # digest -> entry number: a token and its digest both listed
    for i, (token, account) in enumerate(doc.items(), start=1):
        line = located.line_of((token,))
        problem = _token_problem(token, account)
        if problem is None:
            digest = token_digest(token)
            if digest in seen:
                problem = f"the same token as entry {seen[digest]} (one written as its digest)"
            seen[digest] = i
        if problem is not None:
            raise UsageError(_at(where, line, f"entry {i}: {problem}"))
        tokens[token] = OPERATOR if isinstance(account, dict) else str(account)
    return TokenMap(tokens)


def _token_problem(token: object, account: object) -> str | None:
    if isinstance(token, str) and token.startswith(DIGEST_PREFIX):
        if not _HEX_DIGEST.match(token[len(DIGEST_PREFIX) :]):
            return "a digest must be sha256: and 64 hexadecimal digits"
    elif not isinstance(token, str) or len(token) < 16 or not token.isprintable():
        return "a token must be a printable string of at least 16 characters"
    if isinstance(account, dict):
        if account != {"operator": True}:
            return "an operator's entry is {operator: true}; a tenant's is its account"
        return None
    if not isinstance(account, (str, int)) or isinstance(account, bool) or account == "":
        return "the account must be a string or a number (or {operator: true})"
    return None


def _at(where: str, line: int | None, message: str) -> str:
    return f"{where}:{line}: {message}" if line else f"{where}: {message}"


# --- what the handlers need from the rest of harestart --------------------------------------


class Unprocessable(HarestartError):
    """The group cannot be restarted now (not ACTIVE, locked, unfinished run): 422.

    ``tenant``: the same without what only operators see (a lock holder, paths); None when
    the message shows none."""

    def __init__(self, message: str, *, tenant: str | None = None) -> None:
        super().__init__(message)
        self.tenant = tenant


@dataclass(frozen=True)
class RunView:
    """What is known about a group's runs without touching a host: the judge's facts (lock,
    unfinished run, a restart of this server running) and this server's own restarts."""

    facts: RunFacts = field(default_factory=RunFacts)
    current_step: str | None = None  # the running step of a restart this server started
    last_restart: dict[str, Any] | None = None
    inventory: str = "INVENTORY"  # as the resume command of an unfinished run names it

    def verdict(self, group: Group, state: GroupState | None = None) -> Verdict:
        """The judge's verdict; without ``state`` the group's health is not judged."""
        return judge_group(group, state, self.facts)

    def for_tenant(self) -> RunView:
        """What a tenant's token may see: a restart runs since when, not who runs it where
        (pid, user, host, state directory, inventory and log paths are an operator's)."""
        return RunView(
            self.facts.for_tenant(), self.current_step, tenant_restart(self.last_restart)
        )


def tenant_restart(last: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last restart without the server's paths (log file, commands naming the inventory)
    and without error texts, which may name a lock holder or a file: those stay in the log,
    under the request id."""
    if last is None:
        return None
    doc = dict(last)
    result = doc.get("result")
    if isinstance(result, dict):
        result = {**result, **({"log_file": None} if "log_file" in result else {})}
        for key in ("failure", "interruption"):
            if isinstance(result.get(key), dict):
                result[key] = {**result[key], "next_steps": []}
        doc["result"] = result
    error = doc.get("error")
    if isinstance(error, dict):
        doc["error"] = {
            "name": error.get("name"),
            "message": "the restart did not run to its end; an operator can read why in "
            f"serve's log under request {doc.get('request_id')}",
        }
    return doc


class Restarter(Protocol):
    def view(self, group: Group) -> RunView: ...

    def start(self, group: Group, request_id: str) -> None:
        """Start the restart in the background once it holds the group's lock.

        Raises Unprocessable when it cannot start (another run holds the group, an unfinished
        run, a stale lock)."""


@dataclass(frozen=True)
class Observed:
    state: GroupState
    observed_at: str  # ISO UTC time the observation was taken
    age_s: float | None = None  # its age when it was handed out


class Observer(Protocol):
    def observe(self, group: Group, *, context: object = None) -> Observed | None:
        """An observation of ``group`` (None: not observed yet). ``context`` is the group's
        run state and step: an observation taken in another context is out of date."""
        ...


class InventoryUnavailable(HarestartError):
    """The inventory file cannot be loaded right now: 503."""


class InventorySource(Protocol):
    def current(self) -> Inventory:
        """The inventory as the file now says; raises InventoryUnavailable."""


# --- the routes ------------------------------------------------------------------------------

# (api, request, path parameters) -> response; an authenticated route's ``accountId`` is the
# token's account by the time its handler runs.
Handler = Callable[["Api", Request, Mapping[str, str]], Response]


@dataclass(frozen=True)
class Route:
    """One resource: its path template as ``openapi.json`` writes it, the one method it
    allows, whether it needs an X-Auth-Token (for the ``{accountId}`` its path must then
    have; a route without a token, such as ``/openapi.json``, has none) and the handler
    answering it. ``ROUTES`` is the whole table; the contract test checks it against
    ``openapi.json`` both ways, so a new route (``/metrics``...) is added to both."""

    template: str
    method: str
    handler: Handler
    authenticated: bool = True
    operator_only: bool = False  # an operator's token only (a route without {accountId})

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods answered: HEAD with every GET (RFC 9110 9.3.2: the GET's head)."""
        return (self.method, "HEAD") if self.method == "GET" else (self.method,)

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.template)

    def match(self, path: str) -> dict[str, str] | None:
        m = self.pattern.match(path)
        return None if m is None else {k: unquote(v) for k, v in m.groupdict().items()}


_PARAM = re.compile(r"\{(\w+)\}")


@functools.cache
def _compiled(template: str) -> re.Pattern[str]:
    r"""``/v1.0/{accountId}/ha`` -> ``^/v1\.0/(?P<accountId>[^/]+)/ha$`` (on the raw path:
    a parameter's ``%2F`` stays inside it)."""
    parts = _PARAM.split(template)  # literal, name, literal, name, ..., literal
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


# A path of the seed's shape with another version than v1.0 (404 naming the version).
_OTHER_VERSION = re.compile(r"^/(?P<version>[^/]+)/[^/]+/ha(?:/[^/]+(?:/action)?)?$")


@functools.cache
def openapi_document() -> bytes:
    """``openapi.json`` as shipped in the package (read once)."""
    return resources.files("harestart.http").joinpath("openapi.json").read_bytes()


# --- the API ---------------------------------------------------------------------------------


_BEARER = re.compile(r"^Bearer +(\S+) *$", re.IGNORECASE)


def _token(req: Request, route: Route) -> str | None:
    """The request's token: ``X-Auth-Token``, or on ``/metrics`` (an operator's route) also
    ``Authorization: Bearer TOKEN``, what Prometheus' scrape setting ``authorization`` sends:
    Prometheus 2.42 (Debian 12's) can send no other header. Both at once is a 400."""
    token = req.header("X-Auth-Token")
    authorization = req.header("Authorization")
    if not route.operator_only or authorization is None:
        return token
    if token is not None:
        raise ApiError(400, "send the token once: X-Auth-Token or Authorization: Bearer")
    bearer = _BEARER.match(authorization)
    if bearer is None:
        raise ApiError(401, "the Authorization header is not 'Bearer TOKEN'")
    return bearer.group(1)


class Api:
    def __init__(
        self,
        *,
        tokens: TokenMap,
        inventory: InventorySource,
        restarter: Restarter,
        observer: Observer,
        shutting_down: Callable[[], bool] = lambda: False,
        metrics: Metrics | None = None,
    ) -> None:
        self.tokens = tokens
        self.inventory = inventory
        self.restarter = restarter
        self.observer = observer
        self.shutting_down = shutting_down
        self.metrics = metrics

    def handle(self, req: Request) -> Response:
        """Answer one request; never raises. Unexpected errors become 500 with an error id."""
        account: str | None = None
        try:
            account, resp = self._handle(req)
        except ApiError as exc:
            resp = fault_response(exc.code, exc.message, req.request_id, exc.headers)
        except Exception:
            error_id = "err-" + uuid.uuid4().hex[:12]
            log.exception("api.error", error_id=error_id, request_id=req.request_id)
            resp = fault_response(
                500,
                f"the server could not complete the request; the error is logged as {error_id}",
                req.request_id,
                (("X-Error-Id", error_id),),
            )
        if account is not None:
            resp = Response(resp.status, resp.body, resp.headers, account)
        return resp

    def _handle(self, req: Request) -> tuple[str | None, Response]:
        if self.shutting_down():
            raise ApiError(503, "the server is shutting down", headers=(("Retry-After", "30"),))
        route, params = self._route(req)
        if req.method not in route.methods:
            allowed = ", ".join(route.methods)
            raise ApiError(
                405,
                f"{req.method} is not allowed on {req.path}; allowed: {allowed}",
                headers=(("Allow", allowed),),
            )
        if not route.authenticated:
            return None, route.handler(self, req, params)
        caller = self._authenticate(req, params.get("accountId"), route)
        req = replace(req, operator=caller.operator)
        account = caller.account if caller.account is not None else "operator"
        try:
            return account, route.handler(self, req, params)
        except ApiError as exc:
            resp = fault_response(exc.code, exc.message, req.request_id, exc.headers)
            return account, resp

    # --- steps of every request ------------------------------------------------------------

    @staticmethod
    def _route(req: Request) -> tuple[Route, dict[str, str]]:
        for route in ROUTES:
            params = route.match(req.path)
            if params is not None:
                return route, params
        other = _OTHER_VERSION.match(req.path)
        if other is not None:
            version = unquote(other["version"])
            raise ApiError(404, f"unknown API version {version!r}; this server speaks {VERSION}")
        raise ApiError(404, f"no such resource: {req.path}")

    def _authenticate(self, req: Request, path_account: str | None, route: Route) -> Caller:
        token = _token(req, route)
        if not token:
            raise ApiError(401, "this request needs an X-Auth-Token header")
        caller = self.tokens.caller(token)
        if caller is None:
            raise ApiError(401, "the X-Auth-Token is not valid")
        if route.operator_only and not caller.operator:
            raise ApiError(403, f"{route.template} needs an operator's token")
        if path_account is not None and not caller.operator and caller.account != path_account:
            raise ApiError(403, f"this token is not allowed to act for account {path_account}")
        return caller

    def _groups(self, req: Request, account: str) -> list[Group]:
        """The account's groups, once the body is known to be small and the inventory loads."""
        if req.body is None or req.body_length > MAX_BODY:
            raise ApiError(413, f"the request body is over the limit of {MAX_BODY} bytes")
        try:
            inv = self.inventory.current()
        except InventoryUnavailable as exc:
            raise ApiError(503, str(exc)) from None
        groups = [g for g in inv.groups if g.account == account]
        if not groups:
            raise ApiError(404, f"account {account} has no HA instances here")
        return groups

    def _group(self, req: Request, account: str, ha_id: str) -> Group:
        group = next((g for g in self._groups(req, account) if g.id == ha_id), None)
        if group is None:
            raise ApiError(404, f"HA instance {ha_id} of account {account} not found")
        return group

    # --- handlers --------------------------------------------------------------------------

    def _metrics(self, req: Request, params: Mapping[str, str]) -> Response:
        """An operator's token only: the metrics name every account and group."""
        if self.metrics is None:
            raise ApiError(404, f"no such resource: {req.path}")
        body = self.metrics.exposition()
        return Response(200, body, (("Content-Type", METRICS_CONTENT_TYPE),))

    def _openapi(self, req: Request, params: Mapping[str, str]) -> Response:
        return Response(200, openapi_document(), (("Content-Type", "application/json"),))

    def _list(self, req: Request, params: Mapping[str, str]) -> Response:
        account = params["accountId"]
        groups = self._groups(req, account)
        query = parse_qs(req.query, keep_blank_values=True)
        limit = DEFAULT_LIMIT
        if "limit" in query:
            raw = query["limit"][-1]
            given = parse_count(raw)
            if given is None or given < 1:
                raise ApiError(400, f"limit must be a positive integer, not {_short(raw)!r}")
            if given > MAX_LIMIT:
                raise ApiError(
                    413, f"limit {_short(raw)} is above the maximum page size {MAX_LIMIT}"
                )
            limit = given
        marker = query.get("marker", [None])[-1]
        ordered = sorted(groups, key=lambda g: g.id)
        if marker:
            ordered = [g for g in ordered if g.id > marker]  # items after the previous page
        page = ordered[:limit]
        base = f"/{VERSION}/{quote(account, safe='')}/ha"
        doc: dict[str, Any] = {
            "ha_instances": [
                {
                    "id": g.id,
                    "name": g.name,
                    # Host-free: the state of the group's runs, not of its health.
                    "state": self.restarter.view(g).verdict(g).state.value,
                    "links": [{"href": f"{base}/{quote(g.id, safe='')}", "rel": "self"}],
                }
                for g in page
            ]
        }
        if len(ordered) > limit:
            nxt = f"{base}?limit={limit}&marker={quote(page[-1].id, safe='')}"
            doc["links"] = [{"href": nxt, "rel": "next"}]
        return Response.json(200, doc)

    def _show(self, req: Request, params: Mapping[str, str]) -> Response:
        account = params["accountId"]
        group = self._group(req, account, params["haId"])
        view = self.restarter.view(group)
        if not req.operator:
            view = view.for_tenant()
        # A cached observation from another step or state (e.g. MHA still initializing when
        # the run had not finished) would contradict the state shown next to it.
        runs = view.verdict(group)
        observed = self.observer.observe(group, context=(runs.state, view.current_step))
        base = f"/{VERSION}/{quote(account, safe='')}/ha/{quote(group.id, safe='')}"
        doc = ha_instance(group, view, observed, base, tenant=not req.operator)
        return Response.json(200, {"ha_instance": doc})

    def _action(self, req: Request, params: Mapping[str, str]) -> Response:
        account = params["accountId"]
        group = self._group(req, account, params["haId"])
        name = parse_action(req.body or b"")
        if name != "restart":
            if name in KNOWN_ACTIONS:
                raise ApiError(501, f"harestart does not implement the {name!r} action")
            raise ApiError(501, f"unknown action {name!r}; harestart implements 'restart' only")
        try:  # the passwords a run needs: the same check and words as `harestart run`'s
            available_passwords((group,), PlanOptions())
        except UsageError as exc:
            raise ApiError(503, f"HA instance {group.id} cannot be used: {exc}") from None
        try:
            self.restarter.start(group, req.request_id)
        except Unprocessable as exc:
            shown = str(exc) if req.operator or exc.tenant is None else exc.tenant
            raise ApiError(422, shown) from None
        # The seed's response: 202 Accepted, Content-Type: application/json, Content-Length: 0.
        return Response(202, b"", (("Content-Type", "application/json"),))


# Every resource the server answers, in the order they are matched.
ROUTES: tuple[Route, ...] = (
    Route("/openapi.json", "GET", Api._openapi, authenticated=False),
    Route("/metrics", "GET", Api._metrics, operator_only=True),
    Route(f"/{VERSION}/{{accountId}}/ha", "GET", Api._list),
    Route(f"/{VERSION}/{{accountId}}/ha/{{haId}}", "GET", Api._show),
    Route(f"/{VERSION}/{{accountId}}/ha/{{haId}}/action", "POST", Api._action),
)


def route_template(path: str) -> str:
    """The route a path matched, as a template (a metric label: never the raw path, whose
    ids would make one series per group or per mistyped URL)."""
    return next((r.template for r in ROUTES if r.match(path) is not None), "unmatched")


MAX_JSON_DEPTH = 8  # nesting of a request body; {"restart": {}} has 2


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (JSON or not), brackets inside strings not
    counted: checked before ``json.loads``, whose recursion ends in RecursionError (a 500)
    for a few thousand nested ``[``."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_action(body: bytes) -> str:
    """The action named by a POST .../action body; 400 unless it is ``{"<name>": {...}}``
    (at most MAX_JSON_DEPTH deep; its size is bounded by MAX_BODY before it is read)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, 'the body is not valid JSON; send {"restart": {}}') from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ApiError(
            400, f'the body nests deeper than {MAX_JSON_DEPTH} levels; send {{"restart": {{}}}}'
        )
    try:
        doc = json.loads(text)
    except ValueError:
        raise ApiError(400, 'the body is not valid JSON; send {"restart": {}}') from None
    if not isinstance(doc, dict):
        raise ApiError(400, 'the body must be a JSON object such as {"restart": {}}')
    if len(doc) != 1:
        raise ApiError(400, 'the body must name exactly one action, such as {"restart": {}}')
    ((name, value),) = doc.items()
    if name == "restart" and value != {}:
        raise ApiError(400, '"restart" takes no arguments: send {"restart": {}}')
    return str(name)


# --- the HA instance document ----------------------------------------------------------------


def node_status(node: NodeState | None, current_step: str | None, name: str = "") -> str:
    """A seed instance status for one database node (``node`` None: not observed yet)."""
    name = node.name if node is not None else name
    if current_step is not None and current_step.endswith(f":{name}"):
        return "REBOOT"
    if node is None:
        return "UNKNOWN"
    if not node.reachable:
        return "SHUTDOWN"
    if node.role == "replica" and (node.replica is None or not node.replica.threads_running()):
        return "ERROR"
    return "ACTIVE"


def ha_instance(
    group: Group, view: RunView, observed: Observed | None, base: str, *, tenant: bool = False
) -> dict[str, Any]:
    """The seed's ``ha_instance`` (id, name, tenant_id, state, datastore, replica_source,
    replicas) plus what harestart knows: MHA, health, the run lock and the last restart.

    The state, its reason and the health problems are the judge's verdict on ``observed``,
    the same as ``harestart status`` shows. ``observed`` None (not observed yet): the state
    is judged from the lock and journal alone, ``healthy`` and the node fields are null."""
    state = observed.state if observed is not None else None
    judged = run_documents(
        view.verdict(group, state), view.facts, inventory=view.inventory, group_id=group.id
    )
    source = state.node(group.source.name) if state is not None else None
    datastore = None
    if source is not None and source.info is not None:
        datastore = {"type": source.info.flavor.value, "version": source.info.version}

    def node_doc(name: str, role: str) -> dict[str, Any]:
        doc = _node_doc(group, state, name, role, view.current_step)
        return tenant_pending(doc) if tenant else doc

    src_doc = node_doc(group.source.name, group.source.role)
    src_doc["replicas"] = [{"id": r.name, "name": r.name} for r in group.replicas]
    replicas = []
    for r in group.replicas:
        doc = node_doc(r.name, r.role)
        doc["replica_of"] = {"id": group.source.name, "name": group.source.name}
        replicas.append(doc)
    return {
        "id": group.id,
        "name": group.name,
        "tenant_id": group.account,
        "state": judged["state"],
        "state_reason": judged["state_reason"],
        "datastore": datastore,
        "replica_source": [src_doc],
        "replicas": replicas,
        "mha": {
            "manager": group.mha.manager.name,
            "state": state.mha.state.name if state is not None and state.mha else None,
            "text": state.mha_text() if state is not None else "not observed yet",
        },
        "healthy": judged["healthy"] if state is not None else None,
        "problems": judged["problems"],
        "observed_at": observed.observed_at if observed is not None else None,
        "observation_age_s": None
        if observed is None or observed.age_s is None
        else round(observed.age_s, 3),
        "current_step": view.current_step,
        "unfinished_run": judged["unfinished_run"],
        "lock": judged["lock"],
        "last_restart": view.last_restart,
        "links": [{"href": base, "rel": "self"}],
    }


# What a tenant reads of a pending restart (#23), per kind: the variable, values of its own
# server, the package; never a path on the host, an operator's mark text or who marked it.
_TENANT_TEXT = {
    "config": "an option that only takes effect at start differs from the running value",
    "persisted": "a persisted setting differs from the running value",
    "binary": "the server's executable was replaced on disk",
    "library": "a library the server uses was replaced on disk",
    "package": "the installed server package is another version than the one running",
    "mark": "an operator marked the node for a restart",
    "unknown": "whether a restart is pending could not be checked",
}
_TENANT_SUBJECT = frozenset({"config", "persisted", "package"})


def tenant_pending(node: dict[str, Any]) -> dict[str, Any]:
    """A node document as a tenant sees its pending restarts and drift: each reason's kind,
    a sentence per kind, and for config/persisted/package reasons the variable (or package)
    and the values; paths, mark texts and who marked are an operator's."""
    out = dict(node)
    for key in ("pending_restart", "config_drift"):
        if key in out:
            out[key] = [_tenant_reason(r) for r in out[key]]
    return out


def _tenant_reason(reason: dict[str, Any]) -> dict[str, Any]:
    kind = str(reason.get("kind"))
    shown = kind in _TENANT_SUBJECT
    return {
        "kind": kind,
        "subject": reason.get("subject", "") if shown else "",
        "configured": reason.get("configured") if shown else None,
        "running": reason.get("running") if shown else None,
        "text": _TENANT_TEXT.get(kind, "a restart is pending"),
    }


def _node_doc(
    group: Group, state: GroupState | None, name: str, role: str, current_step: str | None
) -> dict[str, Any]:
    """One database node of an ``ha_instance`` (observed fields only when observed)."""
    ns = state.node(name) if state is not None else None
    observed_fields: dict[str, Any] = {"reachable": None} if ns is None else ns.to_dict()
    return {
        "id": name,
        "name": name,
        "role": role,
        "status": node_status(ns, current_step, name),
        "hostname": group.node(name).ssh.host,
        "ha_id": group.id,
        **{k: v for k, v in observed_fields.items() if k not in ("name", "role")},
    }
