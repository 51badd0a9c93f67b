"""_acme: when an ACME certificate is renewed - a fraction of its lifetime (90-day, 47-day and
6-day certificates), a fixed number of days when set (it wins), the clock's edges, the CA's
renewal information (RFC 9773) and the ACME profile.

Only pytest and cryptography are needed.
"""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.trustzone.pki.plugins.module_utils import _acme as A
from ansible_collections.trustzone.pki.plugins.module_utils import _backend as B
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError
from ansible_collections.trustzone.pki.tests.unit.plugins.module_utils.tz_testlib import (
    DAY, NOW)

SECOND = datetime.timedelta(seconds=1)
HOUR = datetime.timedelta(hours=1)
DIRECTORY = "https://acme.example/directory"
WWW = ["www.example.org"]
STATE = {"directory": DIRECTORY, "domains": WWW}


def window(days, **kw):
    """A certificate of ``days`` days issued at NOW: its window and the moment renewal starts."""
    start, end = NOW, NOW + days * DAY
    return A.renewal_window(start, end, **kw)[0], A.renew_from(start, end, **kw)


# --------------------------------------------------------------------------- the window

@pytest.mark.parametrize("days,left", [(90, 30), (47, 47 / 3), (6, 2), (200, 200 / 3)])
def test_a_third_of_the_lifetime_by_default(days, left):
    win, start = window(days)
    assert win == datetime.timedelta(days=left)
    assert start == NOW + days * DAY - datetime.timedelta(days=left)


def test_the_fraction_is_of_the_certificates_own_lifetime():
    assert window(90, fraction=0.5)[0] == 45 * DAY
    assert window(6, fraction=0.25)[0] == 36 * HOUR
    # Let's Encrypt backdates notBefore by an hour: the lifetime counts from notBefore
    start, end = NOW - HOUR, NOW + 6 * DAY - HOUR
    assert A.renew_from(start, end) == start + 4 * DAY


def test_days_win_over_the_fraction_when_set():
    assert window(90, before_days=30) == (30 * DAY, NOW + 60 * DAY)
    assert window(90, fraction=0.5, before_days=10)[0] == 10 * DAY
    # a window longer than the lifetime: due from the start (a fixed window that was set
    # for 90-day certificates is wrong for 6-day ones - the fraction is not)
    assert window(6, before_days=30)[1] < NOW


def test_the_texts_say_how_the_window_was_chosen():
    start, end = NOW, NOW + 90 * DAY
    assert A.renewal_window(start, end)[1] == (
        "within the last 33.3% of its lifetime of 90 days (30 days)")
    assert A.renewal_window(start, end, before_days=30)[1] == "within 30 days"
    assert A.renewal_window(NOW, NOW + 47 * DAY)[1] == (
        "within the last 33.3% of its lifetime of 47 days (15.7 days)")
    assert A.renewal_window(NOW, NOW + 6 * DAY, fraction=0.25)[1] == (
        "within the last 25% of its lifetime of 6 days (36 hours)")
    assert A.span_text(90 * 60) == "90 minutes" and A.span_text(-5) == "0 minutes"
    # the role's default, 0.3333, of a 6-day certificate reads as people would say it
    assert A.renewal_window(NOW, NOW + 6 * DAY, fraction=0.3333)[1] == (
        "within the last 33.3% of its lifetime of 6 days (2 days)")
    assert A.span_text(119.99 * 60) == "2 hours"


@pytest.mark.parametrize("fraction,days", [(0, None), (1, None), (1.5, None), (-0.1, None),
                                           (None, 0), (None, -3), (None, 2.5), (None, True)])
def test_settings_out_of_range_are_refused(fraction, days):
    with pytest.raises(TrustzoneError):
        A.renewal_window(NOW, NOW + 90 * DAY, fraction=fraction, before_days=days)


# --------------------------------------------------------------------------- the clock

@pytest.mark.parametrize("days", [90, 47, 6])
def test_due_from_the_first_second_of_the_window(days):
    start, end = NOW - days * DAY, NOW  # (shifted below so that 'now' moves, not the cert)
    renew = A.renew_from(start, end)
    # one second before the window: fine; at its start and after: due
    assert A.expiry_reason(start, end, renew - SECOND) is None
    at = A.expiry_reason(start, end, renew)
    assert at == "expires %s UTC, %s" % (end.strftime("%Y-%m-%d %H:%M"),
                                         A.renewal_window(start, end)[1])
    assert A.expiry_reason(start, end, renew + SECOND) == at


def test_expired_and_not_yet_valid():
    start, end = NOW - 90 * DAY, NOW
    assert A.expiry_reason(start, end, end - SECOND).startswith("expires ")
    assert A.expiry_reason(start, end, end) == "expired %s UTC" % end.strftime("%Y-%m-%d %H:%M")
    assert A.expiry_reason(start, end, end + 400 * DAY).startswith("expired ")
    # a certificate from the future (a wrong clock here or at the CA) is not trusted either
    assert A.expiry_reason(NOW + HOUR, NOW + 90 * DAY, NOW) == (
        "not valid before %s UTC (is this host's clock right?)"
        % (NOW + HOUR).strftime("%Y-%m-%d %H:%M"))
    assert A.expiry_reason(NOW, NOW + 90 * DAY, NOW) is None  # issued this second


def test_a_six_day_certificate_is_renewed_on_day_four_not_never():
    """The fixed 30-day window of old would renew a 6-day certificate on every run; the
    fraction renews it once, two days before its end."""
    start, end = NOW, NOW + 6 * DAY
    due = [d for d in range(7) if A.expiry_reason(start, end, start + d * DAY)]
    assert due == [4, 5, 6]
    fixed = [d for d in range(7) if A.expiry_reason(start, end, start + d * DAY, before_days=30)]
    assert fixed == [0, 1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- ARI

def test_ari_counts_only_when_the_ca_answered_and_asks_for_renewal():
    said = ("The picked random renewal time 2025-06-02 is in the past. Information on "
            "renewal interval: https://ca.example/incident")
    info = {"supports_ari": True, "should_renew": True, "msg": said, "cert_id": "a.b"}
    assert A.ari_reason(info) == ("the CA's renewal information (RFC 9773) says renew now: "
                                  + said)
    assert A.ari_reason(dict(info, msg="two\n  lines")).endswith("now: two lines")
    assert A.ari_reason(dict(info, should_renew=False)) is None
    # without ARI the module judges by rules of its own (expired, days): not ours to print
    assert A.ari_reason(dict(info, supports_ari=False)) is None
    assert A.ari_reason({}) is None and A.ari_reason(None) is None
    # a failed lookup (the role registers it with failed_when false): no ARI reason
    assert A.ari_reason({"msg": "Connection refused", "changed": False}) is None


# --------------------------------------------------------------------------- all reasons

def loaded(key, cert):
    return {"key": key, "key_error": None, "cert": cert, "cert_error": None, "chain": []}


@pytest.fixture
def issued(keys, zone):
    """A 90-day certificate with its key, issued a day before NOW."""
    key = keys.get("p256#acme")
    cert = zone.leaf(key.public_key(), cn=WWW[0], dns=WWW, not_before=NOW - DAY,
                     not_after=NOW + 89 * DAY)
    return loaded(key, cert)


SPEC = B.acme_key_spec("ec", "secp256r1", 3072)


def test_reasons_of_a_good_certificate(issued):
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, NOW) == []
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, NOW, before_days=30) == []
    assert A.reasons({"key": None, "key_error": None, "cert": None, "cert_error": None,
                      "chain": []}, WWW, SPEC, DIRECTORY, {}, NOW) == ["no readable certificate"]


def test_reasons_put_the_window_first_then_names_key_directory_ari_profile(issued):
    late = NOW + 70 * DAY
    out = A.reasons(issued, ["other.example.org"], B.acme_key_spec("ec", "secp384r1", 0),
                    DIRECTORY, STATE, late)
    assert out == [
        "expires %s UTC, within the last 33.3%% of its lifetime of 90 days (30 days)"
        % (NOW + 89 * DAY).strftime("%Y-%m-%d %H:%M"),
        "names differ: has DNS:www.example.org", "key type differs"]
    # the same with a fixed window: the old wording
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, late, before_days=100) == [
        "expires %s UTC, within 100 days" % (NOW + 89 * DAY).strftime("%Y-%m-%d %H:%M")]
    ari = {"supports_ari": True, "should_renew": True, "msg": "window began"}
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, NOW, renewal_info=ari) == [
        "the CA's renewal information (RFC 9773) says renew now: window began"]
    assert A.reasons(issued, WWW, SPEC, "https://other/dir", STATE, NOW) == [
        "issued by another ACME directory (%s)" % DIRECTORY]


def test_a_changed_profile_is_a_reason_only_for_the_same_directory(issued):
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, NOW, profile="shortlived") == [
        "issued without a profile, not for profile shortlived"]
    state = dict(STATE, profile="classic")
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, state, NOW, profile="classic") == []
    assert A.reasons(issued, WWW, SPEC, DIRECTORY, state, NOW) == [
        "issued for profile classic, not for profile (none)"]
    assert A.profile_reason(state, "x", "https://other/dir") is None
    assert A.profile_reason(None, "x", DIRECTORY) is None


def test_reasons_refuse_bad_settings(issued):
    with pytest.raises(TrustzoneError, match="renew_fraction"):
        A.reasons(issued, WWW, SPEC, DIRECTORY, STATE, NOW, fraction=1)
