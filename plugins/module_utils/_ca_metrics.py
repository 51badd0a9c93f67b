# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The CA host's metrics file (``docs/metrics.md``), read from the CA directory: the CA-side
half of ``_metrics``, apart so that a node module (which AnsiballZ ships with every
module_utils it might import) never carries the CA's state, ledger and rotation code.
"""

from __future__ import annotations

import os

from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _ledger
from ansible_collections.trustzone.pki.plugins.module_utils import _metrics
from ansible_collections.trustzone.pki.plugins.module_utils import _rotation
from ansible_collections.trustzone.pki.plugins.module_utils._ca import CaDir


def ca_facts(ca_dir, zone, now):
    """``_metrics.ca_text``'s facts read from the CA directory (the state in force, read
    only): the ledger's counts by status, the rotation phase, every CRL's issuer and
    nextUpdate, and ``now`` as the time of the last run (``docs/metrics.md``)."""
    counts = {}
    conn = _ledger.connect(ca_dir, create=False)
    if conn is not None:
        try:
            counts = _ledger.counts_by_status(conn, zone)
        finally:
            conn.close()
    path = os.path.join(ca_dir, _layout.CRL_FILE)
    return {"ledger": counts, "phase": _rotation.phase_of(CaDir(ca_dir).load_state()),
            "crls": _metrics.crl_facts(_fs.read_file(path), path),
            "last_success": _layout.iso(now)}


def publish_ca(directory, zone, ca_dir, now):
    """Write the CA host's file from the CA directory (``ca_facts``) when it differs."""
    return _metrics.publish(directory, _metrics.ca_file(zone),
                            _metrics.ca_text(zone, ca_facts(ca_dir, zone, now)))
