from tests.helpers import LineClient


def test_two_clients_talk(connect):
    alice = connect("alice")
    bob = connect("bob")
    alice.expect("join", name="bob")
    bob.send({"type": "say", "text": "hi", "ref": "r1"})
    echo = bob.expect("msg")
    assert echo["ref"] == "r1" and echo["text"] == "hi"
    got = alice.expect("msg")
    assert got["id"] == echo["id"] and "ref" not in got


def test_line_client(server, connect):
    alice = connect("alice")
    nc = LineClient(server.port)
    nc.send(b"carol\r\n")
    nc.expect(r"welcome, carol")
    alice.send({"type": "say", "text": "red \x1b[31m"})
    line = nc.expect(r"<alice>")
    assert line.endswith("red \\e[31m\r\n")
    nc.close()
