"""module_utils/_schedule.py: the schedule role's units and the exact command each runs."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _schedule as S
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

SETTINGS = {"inventory": "/srv/pki/hosts.yml", "ansible_playbook": "/usr/bin/ansible-playbook",
            "wrapper": "/usr/local/libexec/trustzone-scheduled-run",
            "lock": "/run/lock/trustzone-prod.lock", "log_dir": "/var/log/trustzone/",
            "vault_password_file": ""}
RENEW = {"name": "renew", "playbook": "trustzone.pki.renew", "on_calendar": "*-*-* 00/4:00:00"}


def systemd_words(line):
    """Split an ExecStart= line the way systemd does for our quoting (double quotes, C-style
    backslash escapes, %% and $$ undoubled)."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line, posix=True)]


def test_one_job_gives_its_unit_log_and_command():
    (job,) = S.plan("prod", [RENEW], SETTINGS)
    assert job["unit"] == "trustzone-prod-renew"
    assert job["log"] == "/var/log/trustzone/trustzone-prod-renew.log"
    assert job["randomized_delay"] == "10min" and job["timeout"] == "2h"
    assert systemd_words(job["exec_start"]) == [
        SETTINGS["wrapper"], SETTINGS["lock"], "/usr/bin/ansible-playbook", "-i",
        "/srv/pki/hosts.yml", "trustzone.pki.renew"]
    assert job["description"] == "trustzone.pki zone prod: renew (trustzone.pki.renew)"


def test_the_vault_password_is_named_by_path_and_args_follow_the_playbook():
    (job,) = S.plan("prod", [dict(RENEW, args=["--limit", "web", "-e", "x=50% $HOME"])],
                    dict(SETTINGS, vault_password_file="/root/.vault-pass"))
    words = systemd_words(job["exec_start"])
    assert words[5:] == ["--vault-password-file", "/root/.vault-pass", "trustzone.pki.renew",
                         "--limit", "web", "-e", "x=50% $HOME"]
    # systemd would expand %H and $HOME: both are doubled in the unit file
    assert "50%% $$HOME" in job["exec_start"]


def test_quoting_escapes_quotes_and_backslashes():
    assert S.quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    with pytest.raises(TrustzoneError, match="control character"):
        S.quote("two\nlines")


def test_environment_words_are_quoted_and_checked():
    (job,) = S.plan("prod", [RENEW], dict(SETTINGS, environment={
        "ANSIBLE_CONFIG": "/srv/pki/ansible.cfg", "GREETING": 'say "50%"'}))
    assert job["environment"] == ['"ANSIBLE_CONFIG=/srv/pki/ansible.cfg"',
                                  '"GREETING=say \\"50%%\\""']
    with pytest.raises(TrustzoneError, match="not a variable name"):
        S.environment({"BAD-NAME": "x"})


@pytest.mark.parametrize("jobs, message", [
    ([], "trustzone_schedule_jobs is empty"),
    ([dict(RENEW, name="Renew!")], r"trustzone_schedule_jobs\[0\]: name 'Renew!'"),
    ([RENEW, RENEW], "job name 'renew' is used twice"),
    ([dict(RENEW, playbook="")], r"\(renew\): playbook is empty"),
    ([dict(RENEW, on_calendar=" ")], r"\(renew\): on_calendar is empty"),
    ([dict(RENEW, randomized_delay="soon")], "randomized_delay is 'soon', not a systemd time span"),
    ([dict(RENEW, args="--limit web")], "args is not a list"),
    ([dict(RENEW, every="4h")], "unknown key"),
    (["renew"], "is not a mapping"),
])
def test_a_wrong_job_is_one_line_naming_it_and_the_fix(jobs, message):
    with pytest.raises(TrustzoneError, match=message) as err:
        S.plan("prod", jobs, SETTINGS)
    assert "Fix: " in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["inventory", "ansible_playbook", "lock", "log_dir"])
def test_paths_must_be_absolute(key):
    with pytest.raises(TrustzoneError, match="trustzone_schedule_%s" % key):
        S.plan("prod", [RENEW], dict(SETTINGS, **{key: "relative/path"}))
    with pytest.raises(TrustzoneError, match="trustzone_schedule_%s is empty" % key):
        S.plan("prod", [RENEW], dict(SETTINGS, **{key: ""}))


def test_unit_names_escape_what_systemd_does_not_allow():
    assert S.unit_name("prod", "renew") == "trustzone-prod-renew"
    assert S.unit_name("a b", "x") == "trustzone-a\\x20b-x"
    assert S.unit_name("prod-eu", "renew") == "trustzone-prod\\x2deu-renew"


def test_stale_units_are_this_zones_units_no_job_names():
    wanted = S.plan("prod", [RENEW], SETTINGS)
    present = ["trustzone-prod-renew.service", "trustzone-prod-renew.timer",
               "trustzone-prod-crl.timer", "trustzone-prod-crl.service",
               "trustzone-dev-renew.timer", "nginx.service",
               S.unit_name("prod-eu", "renew") + ".timer", "trustzone-prod-crl.timer.d"]
    assert S.stale_units("prod", wanted, present) == ["trustzone-prod-crl.service",
                                                      "trustzone-prod-crl.timer"]
    assert S.stale_units("prod", [], present) == [
        "trustzone-prod-crl.service", "trustzone-prod-crl.timer",
        "trustzone-prod-renew.service", "trustzone-prod-renew.timer"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_accepts_the_default_calendar():
    proc = subprocess.run(["systemd-analyze", "calendar", RENEW["on_calendar"]],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
