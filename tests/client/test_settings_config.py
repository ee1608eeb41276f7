"""The config file and the settings: key specs, every error path, file < flags.

Real files in tmp_path; the autouse fixture in tests/conftest.py points
$XDG_CONFIG_HOME (and the data and state homes) at a temporary directory.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from chatclient.__main__ import build_settings, parse_args
from chatclient.config import (
    ConfigError,
    _style_classes,
    format_key_sequence,
    load_config,
    parse_key_spec,
)
from chatclient.settings import (
    DEFAULT_KEYS,
    KEY_ACTIONS,
    TuiSettings,
    config_home,
    default_history_file,
    default_log_dir,
)
from chatclient.tui import STYLE
from tests.client.conftest import run_client
from tests.helpers import ThreadServer

FULL = """\
name = "alice"
servers = ["chat.example.org:5501", "[::1]"]
rooms = ["Lobby", "#dev", "lobby"]
password_file = "secret.txt"
tls = true
cafile = "~/ca.pem"
insecure = false

[ui]
bell = false
bell_interval = 3
notify = "osc9"
notify_interval = 5.5
highlight = ["deploy", "on call"]
mouse = false
members = false
smart_filter = false
smart_filter_minutes = 30
scrollback = 500

[logs]
enabled = false
dir = "logs"

[history]
file = "hist"
size = 50

[colours]
mention = "bg:#5f0000 #ffffff bold"
"tab.current" = "reverse"

[keys]
pane_next = "Alt-N"
search = "Ctrl-X Ctrl-R"
members = ""
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ key specs


@pytest.mark.parametrize(
    ("spec", "keys"),
    [
        ("Ctrl-N", ("c-n",)),
        ("C-n", ("c-n",)),
        ("c-n", ("c-n",)),
        ("Alt-J", ("escape", "j")),
        ("alt-j", ("escape", "j")),
        ("M-j", ("escape", "j")),
        ("Meta-Shift-J", ("escape", "J")),
        ("Alt-1", ("escape", "1")),
        ("Alt-=", ("escape", "=")),
        ("Alt--", ("escape", "-")),
        ("F2", ("f2",)),
        ("f12", ("f12",)),
        ("PageUp", ("pageup",)),
        ("PgDn", ("pagedown",)),
        ("Alt-Home", ("escape", "home")),
        ("Ctrl-PageUp", ("c-pageup",)),
        ("Ctrl-Shift-Left", ("c-s-left",)),
        ("Shift-Tab", ("s-tab",)),
        ("s-tab", ("s-tab",)),
        ("Ctrl-Space", ("c-@",)),
        ("Alt-Enter", ("escape", "c-m")),
        ("Escape", ("escape",)),
        ("Ctrl-X Ctrl-C", ("c-x", "c-c")),
        ("Ctrl-X b", ("c-x", "b")),
        ("Ctrl-F5", ("c-f5",)),
        ("", ()),
        ("   ", ()),
    ],
)
def test_key_specs(spec: str, keys: tuple[str, ...]) -> None:
    assert parse_key_spec(spec) == keys


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("a", "starts with a plain character"),
        ("Space", "Space alone"),
        ("Hyper-A", "unknown key 'Hyper-A'"),
        ("Ctrl-Foo", "unknown key 'Foo'"),
        ("Ctrl-Shift-A", "Ctrl-Shift-letter"),
        ("Shift-1", "write the character Shift gives"),
        ("Shift-F2", "cannot send that combination"),
        ("Ctrl-Tab", "cannot send that combination"),
        ("F25", "unknown key"),
    ],
)
def test_bad_key_specs(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_key_spec(spec)


def test_every_default_key_reads_back_from_its_spelling() -> None:
    for action, keys in DEFAULT_KEYS.items():
        assert parse_key_spec(format_key_sequence(keys)) == keys, action
    assert format_key_sequence(("escape", "j")) == "Alt-J"
    assert format_key_sequence(("c-n",)) == "Ctrl-N"
    assert format_key_sequence(("pagedown",)) == "PageDown"


def test_the_actions_the_lead_binds() -> None:
    assert KEY_ACTIONS[:2] == ("pane_next", "pane_prev")
    assert {f"pane_{n}" for n in range(1, 11)} <= set(KEY_ACTIONS)
    assert DEFAULT_KEYS["pane_10"] == ("escape", "0")
    assert DEFAULT_KEYS["pane_jump"] == ("escape", "j")
    assert DEFAULT_KEYS["filter"] == ("escape", "=")
    assert len(set(DEFAULT_KEYS.values())) == len(DEFAULT_KEYS)  # no two actions share keys


# ------------------------------------------------------------------ reading a file


def test_a_full_file(tmp_path: Path) -> None:
    file = load_config(write(tmp_path, FULL))
    assert file.session == {
        "name": "alice",
        "servers": [("chat.example.org", 5501), ("::1", None)],
        "rooms": ["lobby", "dev"],
        "password_file": tmp_path / "secret.txt",  # relative to the file
        "tls": True,
        "cafile": Path.home() / "ca.pem",
        "insecure": False,
    }
    ui = file.ui
    assert ui["bell"] is False and ui["bell_interval"] == 3.0
    assert ui["notify"] == "osc9" and ui["notify_interval"] == 5.5
    assert ui["highlight"] == ("deploy", "on call")
    assert ui["logs"] is False and ui["log_dir"] == tmp_path / "logs"
    assert ui["history_file"] == tmp_path / "hist" and ui["history_size"] == 50
    assert ui["colours"] == {"mention": "bg:#5f0000 #ffffff bold", "tab.current": "reverse"}
    assert ui["keys"]["pane_next"] == ("escape", "n")
    assert ui["keys"]["search"] == ("c-x", "c-r")
    assert ui["keys"]["members"] == ()  # unbound
    assert ui["keys"]["pane_prev"] == ("c-p",)  # untouched: the default
    settings = TuiSettings(**ui)
    assert settings.scrollback == 500 and settings.smart_filter_minutes == 30.0


def test_history_save_false_keeps_it_in_memory(tmp_path: Path) -> None:
    file = load_config(write(tmp_path, "[history]\nsave = false\n"))
    assert file.ui == {"history_file": None}


def test_a_missing_default_file_is_fine() -> None:
    assert not (config_home() / "config.toml").exists()
    file = load_config()
    assert (file.path, file.session, file.ui) == (None, {}, {})


def test_the_default_file_is_found_under_xdg_config_home() -> None:
    config_home().mkdir(parents=True)
    (config_home() / "config.toml").write_text('name = "carol"\n')
    assert load_config().session == {"name": "carol"}
    assert parse_args([]).name == "carol"


def test_xdg_homes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    assert default_log_dir() == tmp_path / "data" / "chatclient" / "logs"
    assert default_history_file() == Path.home() / ".local/state/chatclient/history"
    assert TuiSettings().log_dir == tmp_path / "data" / "chatclient" / "logs"


@pytest.mark.parametrize(
    ("text", "key", "complaint"),
    [
        ("nmae = 'a'\n", "nmae", "unknown key (did you mean 'name'?)"),
        ("password = 'hunter22'\n", "password", "not supported"),
        ("[ui]\npassword = 'x'\n", "ui.password", "not supported"),
        ("[ui]\nbell = 'yes'\n", "ui.bell", "expected true or false, got a string"),
        ("[ui]\nbel = true\n", "ui.bel", "did you mean 'bell'?"),
        ("[ui]\nbell_interval = -1\n", "ui.bell_interval", "must be from 0"),
        ("[ui]\nbell_interval = true\n", "ui.bell_interval", "expected a number"),
        ("[ui]\nscrollback = 1.5\n", "ui.scrollback", "expected an integer"),
        ("[ui]\nscrollback = 10\n", "ui.scrollback", "must be from 100"),
        ("[ui]\nnotify = 'growl'\n", "ui.notify", "expected one of auto, osc777"),
        ("[ui]\nhighlight = 'deploy'\n", "ui.highlight", "expected a list of strings"),
        ("[ui]\nhighlight = ['ok', 3]\n", "ui.highlight[1]", "expected a string"),
        ("[ui]\nhighlight = ['  ']\n", "ui.highlight[0]", "a word is 1 to 64"),
        ("ui = 3\n", "ui", "expected a table"),
        ("name = 'bad name'\n", "name", "name"),
        ("name = 3\n", "name", "expected a string"),
        ("rooms = ['ok', 'no room']\n", "rooms[1]", "room"),
        ("servers = ['a', 'b:0']\n", "servers[1]", "the port must be from 1 to 65535"),
        ("servers = []\n", "servers", "at least one server"),
        ("tls = 1\n", "tls", "expected true or false, got an integer"),
        ("password_file = ''\n", "password_file", "must not be empty"),
        ("[logs]\ndir = 5\n", "logs.dir", "expected a string"),
        ("[history]\nsize = 0\n", "history.size", "must be from 1"),
        ("[colours]\nmention = 'bodl'\n", "colours.mention", "bad style 'bodl'"),
        ("[colours]\nmention = 'bg:#zzzzzz'\n", "colours.mention", "bad style"),
        ("[colours]\nmentoin = 'bold'\n", "colours.mentoin", "did you mean 'mention'?"),
        ("[keys]\nserch = 'Ctrl-R'\n", "keys.serch", "did you mean 'search'?"),
        ("[keys]\nsearch = 'Hyper-R'\n", "keys.search", "unknown key"),
        ("[keys]\nsearch = 5\n", "keys.search", "a key is a string"),
        ("[keys]\nsearch = 'Ctrl-N'\n", "keys.search", "Ctrl-N is bound to both pane_next"),
    ],
)
def test_errors_name_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, complaint: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == key
    assert complaint in error.value.message
    assert str(error.value).startswith(f"{path}: {key}: ")
    assert "\n" not in str(error.value)


def test_swapping_two_keys_is_no_conflict(tmp_path: Path) -> None:
    file = load_config(write(tmp_path, "[keys]\npane_next = 'Ctrl-P'\npane_prev = 'Ctrl-N'\n"))
    assert file.ui["keys"]["pane_next"] == ("c-p",)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"name = \n", "not valid TOML: "),
        (b"name = '\xff'\n", "not UTF-8 text"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, complaint: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=complaint):
        load_config(path)


def test_a_missing_config_file_named_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[ui]\nbell = 'yes'\n", "ui.bell: expected true or false"),
        ("password = 'x'\n", "password: a password in clear"),
        (None, "no such file"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_status_2(
    tmp_path: Path, text: str | None, complaint: str
) -> None:
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    result = run_client(None, "--config", str(path), "--name", "alice", "--send", "hi")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"chatclient: {path}: {complaint}")


def test_help_works_with_a_broken_default_file() -> None:
    config_home().mkdir(parents=True)
    (config_home() / "config.toml").write_text("bell = 'yes'\n")
    result = run_client(None, "--help")
    assert result.returncode == 0 and "--config FILE" in result.stdout


# ------------------------------------------------------------------ file < environment < flags


def test_the_file_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_NAME", raising=False)
    monkeypatch.delenv("CHATSERVER_PASSWORD", raising=False)
    (tmp_path / "secret.txt").write_text("s3cret\n")
    config = write(tmp_path, FULL)
    args = parse_args(["--config", str(config)])
    assert args.name == "alice"
    assert args.servers == [("chat.example.org", 5501), ("::1", 5500)]
    assert args.room == ["lobby", "dev"]
    assert args.password == "s3cret"
    assert args.tls is True and args.insecure is False
    assert args.cafile == str(Path.home() / "ca.pem")
    settings = build_settings(args)
    assert settings.bell is False and settings.notify == "osc9" and settings.mouse is False
    assert settings.logs is False and settings.log_dir == tmp_path / "logs"
    assert settings.highlight == ("deploy", "on call")
    assert settings.history_file == tmp_path / "hist"
    assert settings.keys["search"] == ("c-x", "c-r")


def test_flags_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_NAME", raising=False)
    config = write(tmp_path, FULL)
    args = parse_args(
        [
            *("--config", str(config), "--name", "bob", "--host", "other", "--port", "7000"),
            *("--room", "ops", "--no-tls", "--password", "pw", "--bell", "--notify", "off"),
            *("--highlight", "fire", "--highlight", "Fire", "--logs", "--log-dir", "elsewhere"),
            "--mouse",
        ]
    )
    assert args.name == "bob"
    assert args.servers == [("other", 7000)]  # --host: the file's servers are not used
    assert args.room == ["ops"]  # replaced, not added to
    assert args.tls is False
    assert args.password == "pw"  # not the file's password_file
    settings = build_settings(args)
    assert settings.bell is True and settings.notify == "off" and settings.mouse is True
    assert settings.highlight == ("fire", "Fire")
    assert settings.logs is True and settings.log_dir == Path.cwd() / "elsewhere"
    assert settings.scrollback == 500  # what no flag sets still comes from the file


def test_server_flags_replace_the_files_servers(tmp_path: Path) -> None:
    config = write(tmp_path, FULL.replace('password_file = "secret.txt"\n', ""))
    args = parse_args(["--config", str(config), "--server", "a:1"])
    assert args.servers == [("a", 1)]
    args = parse_args(["--config", str(config), "--port", "6000"])
    assert args.servers == [("chat.example.org", 5501), ("::1", 6000)]


def test_the_environment_is_between_file_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret.txt").write_text("from-file\n")
    config = write(tmp_path, FULL)
    monkeypatch.setenv("CHAT_NAME", "dave")
    monkeypatch.setenv("CHATSERVER_PASSWORD", "from-env")
    args = parse_args(["--config", str(config)])
    assert (args.name, args.password) == ("dave", "from-env")
    args = parse_args(["--config", str(config), "--name", "erin"])
    assert args.name == "erin"


def test_no_file_no_flags_gives_the_defaults() -> None:
    settings = build_settings(parse_args(["--name", "alice"]))
    assert settings == TuiSettings()
    assert settings.bell and settings.logs and settings.mouse and settings.notify == "auto"
    assert settings.keys == DEFAULT_KEYS


def test_script_mode_reads_the_file_too(tmp_path: Path, server: ThreadServer) -> None:
    config = write(tmp_path, f'name = "scripty"\nservers = ["127.0.0.1:{server.port}"]\n')
    result = run_client(None, "--config", str(config), "--send", "hello from the file")
    assert result.returncode == 0, result.stderr
    assert "<scripty> hello from the file" in result.stdout


def test_a_key_outside_its_table_says_where_it_belongs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bell: unknown key here: it belongs in the \[ui\]"):
        load_config(write(tmp_path, "bell = false\n"))
    with pytest.raises(
        ConfigError, match=r"ui.size: unknown key here: it belongs in the \[history"
    ):
        load_config(write(tmp_path, "[ui]\nsize = 5\n"))


def test_the_example_config_is_complete_and_valid(tmp_path: Path) -> None:
    """docs/chatclient.example.toml with every option uncommented loads, and shows every option."""
    example = Path(__file__).resolve().parents[2] / "docs" / "chatclient.example.toml"
    text = example.read_text()
    uncommented = re.sub(r"(?m)^#(?=\[|\"?[\w.-]+\"?\s*=)", "", text)
    (tmp_path / "password").write_text("x\n")
    file = load_config(write(tmp_path, uncommented))
    defaults = TuiSettings()
    settings = TuiSettings(**file.ui)
    for f in fields(TuiSettings):
        if f.name not in ("highlight", "log_dir", "history_file", "colours"):  # examples, ~
            assert getattr(settings, f.name) == getattr(defaults, f.name), f.name
    assert set(file.ui["keys"]) == set(KEY_ACTIONS)
    assert file.ui["keys"] == dict(DEFAULT_KEYS)
    assert set(file.ui["colours"]) == _style_classes()
    assert dict(STYLE).items() <= file.ui["colours"].items()  # the defaults shown
    for option in ("name", "servers", "rooms", "password_file", "tls", "cafile", "insecure"):
        assert option in file.session
