"""lab/hooks/haproxy_hook.py, the example HAProxy hook: its pure parts (``show stat`` parsing,
the API address, settings, usage errors). The script talks to a real HAProxy in
tests/integration/test_proxy.py; it is a standalone file (standard library only), loaded here
from its path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HOOK = Path(__file__).resolve().parents[2] / "lab" / "hooks" / "haproxy_hook.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("haproxy_hook", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["haproxy_hook"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


hook = _load()

# `show stat` from HAProxy 2.6.12 (Debian 12's, the lab image's): readers/db2 checked and DOWN,
# readers/db3 unchecked and drained, writer/db1 disabled (MAINT), and the BACKEND lines.
SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttl"
    "e,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_"
    "1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_to"
    "t,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,"
    "ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_ris"
    "e,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_"
    "rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache"
    "_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_"
    "conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,a"
    "gg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_"
    "rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors"
    ",h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,"
    "h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connection"
    "s,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spli"
    "ced_bytes_in,h1_spliced_bytes_out,\n"
    "readers,db2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,2,2,,1,2,1,,0,,2,0,,0,L4CON,,0,,,,"
    ",,,,,,,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,3,0,,,,127"
    ".0.0.1:1,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "readers,db3,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,0,,,1,2,2,,0,,2,0,,0,,,,,,,,,,,,"
    ",,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:2,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1"
    ",,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "readers,BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,1,0,0,,1,2,0,,0,,1,0,,0,,,,,,,,,,"
    ",,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1"
    ",0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "writer,db1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,2,,,1,3,1,,0,,2,0,,0,,,,,,,,,,,,,,0,"
    "0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:3,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,"
    "-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "writer,BACKEND,0,0,0,0,1,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,0,2,2,,1,3,0,,0,,1,0,,0,,,,,,,,,"
    ",,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,"
    "0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
)


def test_parse_stat_reads_every_server_line_and_skips_the_totals() -> None:
    servers = hook.parse_stat(SHOW_STAT)
    assert sorted(servers) == [("readers", "db2"), ("readers", "db3"), ("writer", "db1")]
    db2 = servers[("readers", "db2")]
    assert (db2.backend, db2.name, db2.status, db2.sessions) == ("readers", "db2", "DOWN", 0)
    assert not db2.up
    assert servers[("readers", "db3")].status == "no check"
    assert servers[("readers", "db3")].up  # unchecked servers count as up
    assert servers[("writer", "db1")].in_maint


def test_parse_stat_reads_current_sessions_and_transitional_states() -> None:
    text = "# pxname,svname,qcur,qmax,scur,status\nreaders,db2,0,0,7,UP 1/2\n"
    server = hook.parse_stat(text)[("readers", "db2")]
    assert server.sessions == 7
    assert not server.up  # "UP 1/2": failing its checks, on its way down


def test_parse_stat_refuses_an_answer_that_is_not_csv() -> None:
    with pytest.raises(hook.HookError, match="unexpected 'show stat' answer"):
        hook.parse_stat("Unknown command. Please enter one of the following commands only:\n")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:9999", ("AF_INET", ("127.0.0.1", 9999))),
        (":9999", ("AF_INET", ("127.0.0.1", 9999))),
        ("/run/haproxy/admin.sock", ("AF_UNIX", "/run/haproxy/admin.sock")),
        ("./admin.sock", ("AF_UNIX", "./admin.sock")),
    ],
)
def test_api_address(spec: str, expected: tuple[str, object]) -> None:
    family, address = hook.api_address(spec)
    assert (family.name, address) == expected


def test_settings_defaults_and_overrides() -> None:
    cfg = hook.Settings.from_env({})
    assert (cfg.writer, cfg.readers, cfg.drain_timeout, cfg.up_timeout) == (
        "writer",
        "readers",
        30.0,
        30.0,
    )
    cfg = hook.Settings.from_env({"HAPROXY_READER_BACKEND": "ro", "HAPROXY_DRAIN_TIMEOUT": "5"})
    assert (cfg.readers, cfg.drain_timeout) == ("ro", 5.0)
    with pytest.raises(hook.HookError, match="HAPROXY_UP_TIMEOUT must be a number"):
        hook.Settings.from_env({"HAPROXY_UP_TIMEOUT": "soon"})


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as no_hook:
        hook.main([], env={"HAPROXY_API": "127.0.0.1:9999"})
    assert no_hook.value.code == 2
    with pytest.raises(SystemExit) as no_api:
        hook.main([], env={"HARESTART_HOOK": "after_switch"})
    assert no_api.value.code == 2
    assert "set HAPROXY_API" in capsys.readouterr().err


def test_an_unreachable_api_fails_the_hook_with_its_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "HARESTART_HOOK": "before_node_restart",
        "HARESTART_NODE": "db2",
        "HARESTART_GROUP": "lab",
        "HAPROXY_API": str(tmp_path / "no-such.sock"),
    }
    assert hook.main([], env=env) == 1
    err = capsys.readouterr().err
    assert "haproxy_hook before_node_restart [group=lab node=db2]: FAILED" in err
    assert "runtime API at" in err


def test_a_hook_without_its_node_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"HARESTART_HOOK": "after_switch", "HAPROXY_API": "/nonexistent.sock"}
    assert hook.main([], env=env) == 1
    assert "HARESTART_OLD_SOURCE is not set" in capsys.readouterr().err


def test_status_is_a_command_too_and_fails_without_an_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hook.main(["status", "--api", str(tmp_path / "no-such.sock")], env={}) == 1
    assert "haproxy_hook status [" in capsys.readouterr().err


# --- the persistent mode, against a fake runtime API ---------------------------------------------


class FakeRuntimeApi:
    """HAProxy's runtime API on a unix socket, as far as the hook uses it: ``show stat`` (the
    servers' status and sessions) and ``set server B/S state ready|maint|drain`` /
    ``shutdown sessions server``, several per request separated by ``;``. Records each
    command."""

    def __init__(self, path: Path, servers: dict[tuple[str, str], str]) -> None:
        import socketserver
        import threading

        self.servers = dict(servers)
        self.commands: list[str] = []
        api = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode().strip()
                self.wfile.write(api.answer(line).encode())

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, request: str) -> str:
        out = []
        for command in (c.strip() for c in request.split(";")):
            self.commands.append(command)
            words = command.split()
            if command == "show stat":
                rows = [f"{b},{s},0,{st}" for (b, s), st in sorted(self.servers.items())]
                out.append("# pxname,svname,scur,status\n" + "\n".join(rows) + "\n")
            elif words[:2] == ["set", "server"] and words[3] == "state":
                key = tuple(words[2].split("/", 1))
                new = {"ready": "UP", "maint": "MAINT", "drain": "DRAIN"}[words[4]]
                self.servers[key] = new  # type: ignore[index]
        return "".join(out)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def event(event_id: int, point: str, node: str, old: str = "db1", new: str = "db1") -> str:
    import json

    return json.dumps({"id": event_id, "point": point, "account": "1", "group": "lab",
                       "run_id": "r1", "node": node, "node_host": node, "role": "replica",
                       "old_source": old, "new_source": new, "strategy": "switchover"})  # fmt: skip


def test_the_persistent_mode_answers_each_event_from_one_process(tmp_path: Path) -> None:
    import json

    from harestart.adapters.hooks import SubprocessHookRunner
    from harestart.domain.group import HookPoint
    from harestart.domain.hook_protocol import Ending, answer_outcome, hello, hello_outcome

    api = FakeRuntimeApi(
        tmp_path / "admin.sock",
        {("writer", "db1"): "UP", ("writer", "db2"): "MAINT", ("readers", "db2"): "UP"},
    )
    env = {"PATH": "/usr/bin:/bin", "HARESTART_HOOK_MODE": "persistent",
           "HAPROXY_API": str(tmp_path / "admin.sock"), "HAPROXY_UP_TIMEOUT": "5"}  # fmt: skip
    prog = SubprocessHookRunner().start(f"{sys.executable} {HOOK}", cwd=str(tmp_path), env=env)
    try:
        points = list(HookPoint)
        first = prog.exchange(hello(points), timeout=30)
        assert hello_outcome("h", first, 30, points) is None

        def send(line: str) -> tuple[Ending, str]:
            event_id = json.loads(line)["id"]
            outcome = answer_outcome("h", prog.exchange(line, timeout=30), 30, event_id)
            return outcome.ending, outcome.message

        assert send(event(1, "before_node_restart", "db2")) == (
            Ending.OK,
            "readers/db2 drained (DRAIN, 0 current sessions)",
        )
        assert send(event(2, "after_node_restart", "db2"))[0] is Ending.OK
        assert send(event(3, "before_switch", "db1", "db1", "db9")) == (
            Ending.ERROR,
            "not a server of backend writer: db9",
        )
        assert send(event(4, "after_switch", "db1", "db1", "db2")) == (
            Ending.OK,
            "writer moved: writer/db2 UP, writer/db1 in maintenance",
        )
        assert send('{"id": 5, "point": "after_restart"}') == (
            Ending.ERROR,
            "not an event this hook handles: 'after_restart'",
        )
        late = prog.exchange(event(6, "after_node_restart", "db2"), timeout=30)
        assert "haproxy_hook after_node_restart [group=lab node=db2" in late.output
        assert json.loads(late.answer or "{}") == {
            "id": 6,
            "ok": True,
            "message": "readers/db2 ready and UP; writer/db2 UP",  # db2 is the writer now
        }
    finally:
        assert prog.stop() == "exited 0"  # the end of its input ends it
        api.close()
    assert "set server writer/db2 state ready" in api.commands
    moved = api.commands.index("set server writer/db2 state ready")
    assert api.commands[moved + 1 : moved + 3] == [
        "set server writer/db1 state maint",
        "shutdown sessions server writer/db1",
    ]
    assert api.servers[("writer", "db2")] == "UP" and api.servers[("writer", "db1")] == "MAINT"


def test_the_persistent_mode_refuses_what_is_not_harestarts_hello() -> None:
    import io

    out, log = io.StringIO(), io.StringIO()
    assert hook.serve("/nonexistent.sock", {}, io.StringIO('{"hello": 1}\n'), out, log) == 2
    assert out.getvalue() == "" and "not harestart's hello" in log.getvalue()
    stdin = io.StringIO('{"harestart-hook": 1, "capabilities": []}\nnot json\n')
    assert hook.serve("/nonexistent.sock", {}, stdin, out, log) == 0
    hello, answer = (line for line in out.getvalue().splitlines())
    assert '"capabilities": ["before_node_restart", "after_node_restart"' in hello
    assert answer.startswith('{"ok": false, "message": "unreadable event: ')
