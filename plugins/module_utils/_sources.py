# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Reading a node's zone files (identity and roots) for the store and export modules.

I/O edge only: every file goes through ``_fs.read_file`` (symlinks refused) and every parse
through ``_crypto``; a missing source file is an error that says which role makes it.
"""

from __future__ import annotations

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


class MissingSource(TrustzoneError):
    """A zone file a store is made from does not exist (yet).

    In check mode on a node that is joining the zone in the same run, that is expected: the
    trust and certs roles only said what they would write. Modules report a change then.
    """


def required(path, made_by):
    data = _fs.read_file(path)
    if data is None:
        raise MissingSource("does not exist", path,
                            fix="run the %s role on this node first (playbooks/site.yml does)"
                                % made_by)
    return data


def check_mode_result(exc, **extra):
    """The result of a module in check mode whose sources are not there yet."""
    result = {"changed": True, "msg": "check mode: %s; the store would be made once it exists"
              % exc.render()}
    result.update(extra)
    return result


def roots(pems=None, path=None):
    """The zone's current roots: from ``pems`` (list of PEM texts) if given, else the file."""
    found = []
    if pems:
        for index, pem in enumerate(pems):
            found.extend(C.load_certificates(pem, path="roots[%d]" % index))
        return found
    if not path:
        raise TrustzoneError("no roots given", fix="pass roots or roots_path")
    return C.load_certificates(required(path, "trust"), path=path)


def identity(cert_path, key_path, chain_path=None):
    """``(key, cert, intermediates)`` from a node's identity files.

    ``chain_path`` is the full chain (certificate first); what follows the first certificate
    are the intermediates.
    """
    key = C.load_private_key(required(key_path, "certs"), path=key_path)
    cert = C.load_certificate(required(cert_path, "certs"), path=cert_path)
    intermediates = []
    if chain_path:
        data = _fs.read_file(chain_path)
        if data is not None:
            intermediates = C.load_certificates(data, path=chain_path)[1:]
    return key, cert, intermediates
