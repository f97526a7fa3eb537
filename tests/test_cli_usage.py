"""perceiverio --help lists every command of COMMANDS (one line each); --version prints the package version."""

import perceiverio
from perceiverio import cli


def test_version(capsys):
    cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"perceiverio {perceiverio.__version__}"


def test_help_lists_every_command_once_with_one_line(capsys, monkeypatch):
    cli.main(["--help"])
    out = capsys.readouterr().out
    listed = {line.split()[0]: line for line in out.split("commands:\n")[1].split("\n\n")[0].splitlines()}
    assert set(listed) == set(cli.COMMANDS)
    assert "draw a run's training curves" in listed["plot"] and "train a model" in listed["fit"]
    assert "masked language model fills masked bytes" in listed["fill-mask"]
    monkeypatch.setitem(cli.COMMANDS, "extra", cli.COMMANDS["plot"])  # the list follows COMMANDS
    cli.main([])
    assert "\n  extra " in capsys.readouterr().out
