"""harness.notify without sending: `vet_notify` checks (alone and through the real Ansible
inventory loader, vault included), routing, and what may be shown of a URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import InventoryError
from harness.inventory import VET_VARIABLES, load_inventory
from harness.models import Connection, Host, NotifyRoute, Severity, to_jsonable
from harness.notify import (
    DEFAULT_SEVERITY,
    Kind,
    Notice,
    Notifier,
    _scrub,
    _with_severity,
    check_routes,
    notify_event,
)
from harness.store import Store
from tests.unit.test_inventory import vaulted_yaml, write

SECRET = "Zq9-webhook-t0ken-4711"


def route(url: str, **extra: object) -> NotifyRoute:
    routes, problems = check_routes([{"url": url, **extra}])
    assert problems == []
    return routes[0]


def test_routes_default_to_every_kind_from_info() -> None:
    routes, problems = check_routes([
        {"url": "ntfy://127.0.0.1:8080/vet"},
        {"urls": [f"discord://4711/{SECRET}", "mailtos://vet:pw@smtp.example.net?to=a@b.example"],
         "kinds": ["StageFailed", "HoldingOpened"], "min_severity": "warning"},
    ])
    assert problems == []
    assert [r.label for r in routes] == ["ntfy://127.0.0.1:8080", "discord://4...1",
                                          "mailtos://smtp.example.net"]
    assert routes[0].kinds == frozenset(Kind) and routes[0].min_severity is Severity.INFO
    assert routes[1].kinds == {"StageFailed", "HoldingOpened"}
    assert routes[2].min_severity is Severity.WARNING


def test_a_route_never_shows_its_url() -> None:
    one = route(f"discord://4711/{SECRET}")
    assert SECRET not in repr(one)
    host = Host(name="n1", connection=Connection(kind="local"), notify=(one,))
    assert SECRET not in repr(host)
    assert SECRET not in json.dumps(to_jsonable(host))


@pytest.mark.parametrize(("value", "path", "words"), [
    ({"url": "ntfy://h/t"}, "vet_notify", ["a mapping", "a list of routes"]),
    (["ntfy://h/t"], "vet_notify[0]", ["is text", "write a route like"]),
    ([{"url": "ntfy://h/t", "kind": ["StageFailed"]}], "vet_notify[0].kind",
     ["did you mean 'kinds'"]),
    ([{"url": "ntfy://h/t", "urls": ["ntfy://h/t"]}], "vet_notify[0]", ["exactly one of url"]),
    ([{}], "vet_notify[0]", ["exactly one of url"]),
    ([{"urls": []}], "vet_notify[0].urls", ["a list of apprise URLs"]),
    ([{"url": 42}], "vet_notify[0].url", ["a number", "ntfy://"]),
    ([{"url": "ntfy://h/t", "kinds": ["StageFaild"]}], "vet_notify[0].kinds[0]",
     ["'StageFaild' is not an event kind", "did you mean 'StageFailed'"]),
    ([{"url": "ntfy://h/t", "min_severity": "high"}], "vet_notify[0].min_severity",
     ["'high' is not a severity", "info, warning, critical"]),
])
def test_each_mistake_names_its_path_and_the_fix(
    value: object, path: str, words: list[str]
) -> None:
    routes, problems = check_routes(value)
    assert routes == ()
    assert [p for p, _ in problems] == [path], problems
    for word in words:
        assert word in problems[0][1]


@pytest.mark.parametrize(("url", "words"), [
    (f"ntfyy://{SECRET}@host/topic", ["no service for scheme ntfyy://"]),
    (f"{SECRET}.example.net/hook", ["not a URL (no scheme://", "value not shown"]),
    (f"discord://{SECRET}", ["cannot use this discord:// URL", "value not shown"]),
])
def test_a_bad_url_is_reported_without_its_value(url: str, words: list[str]) -> None:
    _, problems = check_routes([{"url": url}])
    [(path, text)] = problems
    assert path == "vet_notify[0].url"
    assert SECRET not in text
    for word in words:
        assert word in text


def test_routing_by_kind_severity_and_host() -> None:
    everything = route("json://127.0.0.1:9/all")
    pager = route("json://127.0.0.1:9/pager", min_severity="critical")
    runs = route("json://127.0.0.1:9/runs", kinds=["RunCompleted"])
    rack2 = route("json://127.0.0.1:9/rack2")
    notifier = Notifier([(everything, None), (pager, None), (runs, None),
                         (rack2, frozenset({"node09"}))], "r1")

    def targets(kind: Kind, severity: Severity, host: str | None) -> set[str]:
        return {r.url.rsplit("/", 1)[1]
                for r in notifier.targets(Notice(kind, severity, "t", "b", host))}

    assert targets(Kind.STAGE_FAILED, Severity.CRITICAL, "node01") == {"all", "pager"}
    assert targets(Kind.SPEC_MISMATCH, Severity.WARNING, "node01") == {"all"}
    assert targets(Kind.STAGE_FAILED, Severity.CRITICAL, "node09") == {"all", "pager", "rack2"}
    # A run event is for everyone who takes its kind.
    assert targets(Kind.RUN_COMPLETED, Severity.INFO, None) == {"all", "runs", "rack2"}


def test_one_url_gets_an_event_once_even_from_two_groups() -> None:
    a = route("json://127.0.0.1:9/same")
    b = route("json://127.0.0.1:9/same", min_severity="warning")
    notifier = Notifier([(a, frozenset({"n1"})), (b, frozenset({"n2"}))], "r1")
    assert len(notifier.targets(Notice(Kind.RUN_COMPLETED, Severity.WARNING, "t", "b"))) == 1


def test_default_severities() -> None:
    assert DEFAULT_SEVERITY[Kind.STAGE_FAILED] is Severity.CRITICAL
    assert DEFAULT_SEVERITY[Kind.SPEC_MISMATCH] is Severity.WARNING


def test_ntfy_priority_follows_severity_unless_the_url_sets_one() -> None:
    assert _with_severity("ntfy://h/t", "ntfy", Severity.CRITICAL) == "ntfy://h/t?priority=max"
    assert _with_severity("ntfys://h/t?tags=a", "ntfys", Severity.WARNING) \
        == "ntfys://h/t?tags=a&priority=high"
    assert _with_severity("ntfy://h/t?priority=low", "ntfy", Severity.CRITICAL) \
        == "ntfy://h/t?priority=low"
    assert _with_severity("json://h/t", "json", Severity.CRITICAL) == "json://h/t"


def test_failure_text_is_scrubbed_of_url_secrets() -> None:
    url = f"mailtos://vetbot:{SECRET}@smtp.example.net/?to=ops@example.net&token=p%40ss-w0rd"
    text = (f"login as vetbot with {SECRET} failed at smtp.example.net; "
            "token p@ss-w0rd, p%40ss-w0rd")
    clean = _scrub(text, url, "mailtos://smtp.example.net")
    assert SECRET not in clean and "vetbot" not in clean and "p@ss-w0rd" not in clean
    assert "p%40ss-w0rd" not in clean
    assert "smtp.example.net" in clean  # the host is shown anyway
    # A host apprise masks (a Telegram bot token is the host) is masked here too.
    assert "4711" not in _scrub("bot 4711abc refused", "tgram://4711abc/1", "tgram://4...c")


def test_notify_event_without_a_run_goes_nowhere() -> None:
    assert notify_event(Kind.HOLDING_OPENED, host="n1", title="held") == 0


def test_notify_event_uses_the_active_notifier_and_rejects_unknown_kinds() -> None:
    notifier = Notifier([], "r1").activate()
    try:
        assert notify_event("HoldingOpened", host="n1", title="held", body="ssh ...") == 0
        with pytest.raises(ValueError):
            notify_event("HostExploded", host="n1", title="?")
    finally:
        notifier.deactivate()


def test_counts_list_every_kind(tmp_path: Path) -> None:
    notifier = Notifier([], "r1")
    assert notifier.counts() == {k.value: {"sent": 0, "failed": 0} for k in Kind}
    with Store(tmp_path / "s.sqlite") as store:
        notifier.record(store)
        assert store.query("SELECT * FROM events") == []


# --------------------------------------------------------------------------- inventory


def test_vet_notify_is_a_vet_variable() -> None:
    assert "vet_notify" in VET_VARIABLES


def test_group_vars_all_routes_reach_every_host_and_a_group_can_override(
    tmp_path: Path,
) -> None:
    inventory = write(tmp_path / "inv", {
        "hosts.yml": """\
            all:
              children:
                rack1: {hosts: {node01: {}, node02: {}}}
                rack2: {hosts: {node09: {}}}
              vars: {ansible_connection: local}
        """,
        "group_vars/all.yml": """\
            vet_notify:
              - url: ntfy://127.0.0.1:8080/vet
        """,
        "group_vars/rack2.yml": """\
            vet_notify:
              - url: ntfy://127.0.0.1:8080/rack2
                min_severity: critical
        """,
    })
    hosts = {h.name: h for h in load_inventory(inventory)}
    assert [r.url for r in hosts["node01"].notify] == ["ntfy://127.0.0.1:8080/vet"]
    assert [r.url for r in hosts["node09"].notify] == ["ntfy://127.0.0.1:8080/rack2"]
    notifier = Notifier.for_hosts(list(hosts.values()), "r1")
    owners = {r.url.rsplit("/", 1)[1]: names for r, names in notifier.routes}
    assert owners == {"vet": frozenset({"node01", "node02"}), "rack2": frozenset({"node09"})}


def test_a_wrong_route_is_an_inventory_error_with_its_file(tmp_path: Path) -> None:
    inventory = write(tmp_path / "inv", {
        "hosts.yml": "all:\n  hosts: {node01: {}, node02: {}}\n"
                     "  vars: {ansible_connection: local}\n",
        "group_vars/all.yml": f"""\
            vet_notify:
              - url: "ntfyy://{SECRET}@ntfy.example.net/vet"
                min_severity: loud
        """,
    })
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory)
    text = str(exc.value)
    assert SECRET not in text
    assert "hosts node01, node02: vet_notify[0].url: apprise has no service for scheme " \
           "ntfyy://" in text
    assert "vet_notify[0].min_severity 'loud' is not a severity" in text
    assert "group_vars/all.yml" in text


def test_a_url_can_come_from_the_vault(tmp_path: Path) -> None:
    url = f"discord://4711/{SECRET}"
    inventory = write(tmp_path / "inv", {
        "hosts.yml": "all:\n  hosts: {node01: {}}\n  vars: {ansible_connection: local}\n",
        "group_vars/all/vars.yml": """\
            vet_notify:
              - url: "{{ vault_discord_url }}"
                kinds: [StageFailed]
        """,
    })
    (inventory / "group_vars/all/vault.yml").write_text(
        vaulted_yaml("vault_discord_url", url, "pw-notify"))
    (tmp_path / "pass").write_text("pw-notify\n")
    [host] = load_inventory(inventory, vault_password_file=tmp_path / "pass")
    assert [(r.url, r.label) for r in host.notify] == [(url, "discord://4...1")]
    with pytest.raises(InventoryError) as exc:
        load_inventory(inventory)
    assert "vet_notify" in str(exc.value) and SECRET not in str(exc.value)
    assert "--vault-password-file" in str(exc.value)
