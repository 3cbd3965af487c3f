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
