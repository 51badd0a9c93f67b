# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Where a zone's files are and how its data is written: the one place for the layout.

The default directories (the roles' defaults say the same: roles/*/defaults/main.yml), the
file names shared by several modules, the time format of the ledger, the reports and the
CA state, and the shortest passphrase the collection accepts.
"""

from __future__ import annotations

import datetime

from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

NODE_DIR = "/etc/trustzone/%s"  # a zone's files on a node (trustzone_certs_dir)
CA_DIR = "/var/lib/trustzone/%s"  # a zone's CA directory on the CA host (trustzone_ca_dir)
LEDGER_FILE = "ledger.db"  # the issuance ledger, in the CA directory
CRL_FILE = "crl.pem"  # the CRLs, in the CA directory and in a node's directory
SECRETS_KEYRING = "secrets.keyring"  # the zone secrets keyring, in a CA state generation
SECRETS_ENVELOPE = "keyring.p7m"  # the keyring wrapped to a node, in its zone directory
ISO_TIME = "%Y-%m-%dT%H:%M:%SZ"  # every time the collection writes: UTC, to the second
MIN_PASSPHRASE = 12  # CA, backup and PKCS#12 passphrases
ANCHOR_PREFIX = "trustzone-%s-"  # a zone's anchor files in the OS trust store (+ zone)
DAY = 86400


def node_dir(zone, given=None):
    """The zone's directory on a node: ``given`` (the module's ``dir``) or the default."""
    return given or NODE_DIR % zone


def ca_dir(zone, given=None):
    """The zone's CA directory on the CA host: ``given`` (the module's ``dir``) or the
    default."""
    return given or CA_DIR % zone


def iso(moment):
    """``moment`` (an aware UTC datetime) as the collection writes times."""
    return moment.strftime(ISO_TIME)


def parse_time(value):
    """An aware UTC datetime from an ISO string (``...Z`` or with an offset) or datetime."""
    utc = datetime.timezone.utc
    if value is None or isinstance(value, datetime.datetime):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=utc)
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise TrustzoneError("%r is not an ISO 8601 time" % (value,),
                             fix="write it like 2025-06-01T12:00:00Z") from None
    return parsed.replace(tzinfo=utc) if parsed.tzinfo is None else parsed.astimezone(utc)


def days_left(not_after, now):
    """Whole days until ``not_after``, rounded down (negative once expired), as the node
    module counts them."""
    return int((parse_time(not_after) - parse_time(now)).total_seconds() // DAY)
