# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""When an ACME certificate of the acme role is renewed (pure; ``acme_install`` assesses
with it).

* ``renewal_window``: how long before its end a certificate is renewed - a fraction of its
  lifetime (a third by default, as Let's Encrypt advises: 30 days of a 90-day certificate,
  2 of a 6-day one), or a fixed number of days when ``before_days`` is set (it wins);
* ``expiry_reason``: the line the role prints when the certificate is inside that window;
* ``ari_reason``: the line when the CA's renewal information (RFC 9773, asked by
  community.crypto's ``acme_certificate_renewal_info``) says to renew now;
* ``reasons``: every reason, in the order the role prints them (``_backend.acme_reasons``
  for names, key and directory; the window, ARI and the ACME profile here).

Nothing here reads a file, asks the CA or looks at the clock: ``now`` is a parameter.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils import _backend as B
from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

DEFAULT_FRACTION = 1.0 / 3
DAY = 86400


def _number(value):
    """``30``, ``2.5``, ``15.7``: one decimal at most, none when it is whole."""
    return "%g" % round(value, 1)


def span_text(seconds):
    """A duration as people say it: ``90 days``, ``36 hours``, ``45 minutes``."""
    seconds = max(0.0, float(seconds))
    # compared as printed: 0.3333 of 6 days is "2 days", not "48 hours"
    if round(seconds / DAY, 1) >= 2:
        return "%s days" % _number(seconds / DAY)
    if round(seconds / 3600, 1) >= 2:
        return "%s hours" % _number(seconds / 3600)
    return "%s minutes" % _number(seconds / 60)


def check_settings(fraction, before_days):
    """The window's settings as numbers: (fraction or None, days or None).

    ``before_days`` (a positive whole number of days) wins when it is set; otherwise
    ``fraction`` (more than 0, less than 1; None means a third) applies."""
    if before_days is not None:
        if isinstance(before_days, bool) or int(before_days) != before_days or before_days <= 0:
            raise TrustzoneError("renew_before_days must be a positive whole number of "
                                 "days, not %r" % (before_days,))
        return None, int(before_days)
    fraction = DEFAULT_FRACTION if fraction is None else float(fraction)
    if not 0 < fraction < 1:
        raise TrustzoneError("renew_fraction must be more than 0 and less than 1, not %r"
                             % (fraction,))
    return fraction, None


def renewal_window(not_before, not_after, fraction=None, before_days=None):
    """(window, text): renew once fewer than ``window`` (a timedelta) are left; ``text`` says
    how the window was chosen, as the role prints it."""
    fraction, days = check_settings(fraction, before_days)
    if days is not None:
        return datetime.timedelta(days=days), "within %d days" % days
    lifetime = max(0.0, (not_after - not_before).total_seconds())
    window = lifetime * fraction
    return (datetime.timedelta(seconds=window),
            "within the last %s%% of its lifetime of %s (%s)" % (
                _number(fraction * 100), span_text(lifetime), span_text(window)))


def renew_from(not_before, not_after, fraction=None, before_days=None):
    """The moment from which the certificate is renewed."""
    return not_after - renewal_window(not_before, not_after, fraction, before_days)[0]


def _when(moment):
    return moment.strftime("%Y-%m-%d %H:%M")


def expiry_reason(not_before, not_after, now, fraction=None, before_days=None):
    """Why the certificate's dates make it due, or None while it is outside the window.

    Due from the window's start on (inclusive); expired at ``not_after`` itself; a certificate
    whose ``not_before`` is still ahead (a wrong clock here or at the CA) is due too."""
    window, text = renewal_window(not_before, not_after, fraction, before_days)
    if now < not_before:
        return "not valid before %s UTC (is this host's clock right?)" % _when(not_before)
    if now >= not_after:
        return "expired %s UTC" % _when(not_after)
    if not_after - now <= window:
        return "expires %s UTC, %s" % (_when(not_after), text)
    return None


def ari_reason(renewal_info):
    """The line for the CA's renewal information, or None.

    ``renewal_info``: the result of community.crypto.acme_certificate_renewal_info (or {}).
    Only a renewal ARI asked for counts (``supports_ari`` and ``should_renew``): without ARI
    that module falls back to rules of its own, and the window here decides instead."""
    if not isinstance(renewal_info, dict):
        return None
    if not (renewal_info.get("supports_ari") and renewal_info.get("should_renew")):
        return None
    msg = " ".join(str(renewal_info.get("msg") or "").split())
    return "the CA's renewal information (RFC 9773) says renew now" + (": " + msg if msg else "")


def profile_reason(state, profile, directory):
    """Why a certificate issued for another ACME profile is requested again, or None.

    ``state``: its ``state.json``; only a certificate from the directory in use is compared
    (another directory is a reason of its own)."""
    if not isinstance(state, dict) or (state.get("directory") or "") != directory:
        return None
    had, wanted = state.get("profile") or "", profile or ""
    if had == wanted:
        return None
    return "issued %s, not for profile %s" % (
        "for profile %s" % had if had else "without a profile",
        wanted if wanted else "(none)")


def reasons(loaded, domains, key_spec, directory, state, now, fraction=None, before_days=None,
            renewal_info=None, profile=""):
    """Why an ACME certificate must be requested again (the lines the role prints), ``[]``
    when it is fine: the window (``expiry_reason``), names, key and directory
    (``_backend.acme_reasons``), the CA's renewal information and the profile."""
    check_settings(fraction, before_days)
    # the window is decided here: _backend's fixed-days expiry line is left out
    base = [r for r in B.acme_reasons(loaded, domains, key_spec, 0, directory, state, now)
            if not r.startswith("expires ")]
    cert = loaded["cert"]
    if cert is None:
        return base
    out = []
    expiry = expiry_reason(C.not_before(cert), C.not_after(cert), now, fraction, before_days)
    if expiry:
        out.append(expiry)
    out.extend(base)
    for extra in (ari_reason(renewal_info), profile_reason(state, profile, directory)):
        if extra:
            out.append(extra)
    return out
