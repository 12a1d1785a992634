#!/usr/bin/env bash
# Set up everything this project needs on a Debian machine, then run one of its jobs.
#   ./run.sh demo   the main job: local AD + Graph emulator, then Airflow runs the full and a delta sync cycle
#   ./run.sh test   lint and the whole test suite (what CI runs)
#   ./run.sh setup  only install (apt packages, .venv with the pinned dependency set)
set -euo pipefail
cd "$(dirname "$0")"

# libldap-dev, libsasl2-dev, gcc, python3-dev: python-ldap (the AD import's paged read in C) builds from source.
APT_PACKAGES=(samba samba-dsdb-modules samba-vfs-modules samba-ad-provision ldb-tools ldap-utils zstd postgresql chromium redis-server
    libldap-dev libsasl2-dev gcc python3-dev)
VENV=.venv

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_system_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "run.sh: installing Debian packages: ${missing[*]}" >&2
        as_root apt-get update -qq
        # The packages' own services are never used: the project starts its servers itself, on loopback.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # Debian starts its default services on install where it can; ours run from the project's own directories.
        as_root sh -c 'command -v systemctl >/dev/null && systemctl disable --now samba-ad-dc postgresql redis-server >/dev/null 2>&1 || true'
    fi
}

install_python_environment() {
    local stamp="$VENV/.installed"
    local wanted
    wanted=$(cat pyproject.toml devkit/pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return
    fi
    echo "run.sh: installing the Python environment into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    # pip and setuptools warn a lot about things that are not ours; keep their output, show it only on failure.
    if ! "$VENV/bin/pip" install -q -c constraints.txt -e ".[ldap]" -e "./devkit[test]" > "$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "run.sh: installing the Python environment failed (log above, also in $VENV/install.log)" >&2
        exit 1
    fi
    echo "$wanted" > "$stamp"
}

setup() {
    install_system_packages
    install_python_environment
}

case "${1:-}" in
    setup)
        setup
        ;;
    demo)
        setup
        shift
        "$VENV/bin/aadsync-dev" demo "$@"
        ;;
    test)
        setup
        shift
        "$VENV/bin/ruff" check airflow_provider_aadsync devkit tests bench dags
        "$VENV/bin/ruff" format --check airflow_provider_aadsync devkit tests bench dags
        # Two workers: one runs every module that starts a DC, PostgreSQL or Airflow, in order; the other takes the
        # unit tests and the emulator-only modules meanwhile (tests/conftest.py, xdist_scope). `-n 0` after: one process.
        "$VENV/bin/pytest" -n 2 "$@"
        ;;
    *)
        echo "usage: ./run.sh demo|test|setup" >&2
        exit 2
        ;;
esac
