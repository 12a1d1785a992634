"""Where a DC's sockets go: Unix socket paths end at 107 bytes, and Samba's start fails ("failed to setup parent
messaging") when its messaging socket under the lock directory would be longer, as under a pytest-xdist worker's
deeper temp dir or a deep AADSYNC_HOME."""

from __future__ import annotations

from pathlib import Path

from aadsync_devkit.world.samba import SOCKET_PATH_MAX, SambaDC


def conf_paths(dc: SambaDC) -> dict[str, str]:
    lines = dc.write_config().read_text().splitlines()
    return dict(line.strip().split(" = ", 1) for line in lines if " = " in line)


def test_a_home_short_enough_keeps_its_sockets_inside(tmp_path):
    dc = SambaDC(tmp_path / "samba")
    assert dc.socket_root == dc.home
    assert conf_paths(dc)["lock directory"] == f"{dc.home}/lock"


def test_a_deep_home_puts_its_sockets_in_a_short_directory_of_its_own_and_the_database_stays(tmp_path):
    deep = tmp_path / ("d" * 40) / ("e" * 40) / "samba-fabrikam"
    dc = SambaDC(deep)
    assert len(f"{deep}/lock/msg.sock/4194304") > SOCKET_PATH_MAX
    paths = conf_paths(dc)
    for name in ("lock directory", "ncalrpc dir", "winbindd socket directory", "ntp signd socket directory"):
        assert paths[name].startswith(str(dc.socket_root)) and not paths[name].startswith(str(deep)), name
        assert len(f"{paths[name]}/msg.sock/4194304") <= SOCKET_PATH_MAX, name
    assert Path(paths["lock directory"]).is_dir()
    assert paths["private dir"] == f"{deep}/private" and paths["pid directory"] == f"{deep}/run"
    assert SambaDC(deep).socket_root == dc.socket_root  # the same on every start
    assert SambaDC(deep.with_name("samba-contoso")).socket_root != dc.socket_root  # one per DC
    dc.stop()  # not running: removes the socket directory all the same
    assert not dc.socket_root.exists()
