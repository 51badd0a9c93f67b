#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: publish
short_description: Publish the zone's CA certificates and CRLs as DER files for HTTP clients
version_added: 0.1.0
description:
  - Writes, in O(dir), C(<id>.crt) (DER) for every certificate of O(certificates) and
    C(<id>.crl) (DER) for every CRL of O(crl), where C(<id>) is the hex subject key identifier
    of the CA (for a CRL, its authority key identifier). These are the names the AIA caIssuers
    and CRL distribution point URLs of the zone's leaves end in when C(trustzone_ca_publish_url)
    is set (RFC 5280 4.2.1.13 and 4.2.2.1); a web server serves O(dir) at that URL's path.
  - Every file is written atomically (a temporary file in O(dir), then a rename), and only when
    its bytes, mode or owner differ. Files named like published ones that the zone no longer
    publishes (a retired CA's) are removed; nothing else in O(dir) is touched. Symlinks are
    refused, never followed.
author: trustzone.pki maintainers (!UNKNOWN)
extends_documentation_fragment: [trustzone.pki.attributes]
options:
  dir:
    description: The publication directory (created, one level, when missing).
    type: path
    required: true
  certificates:
    description: PEM certificates of the zone's CAs (roots and intermediates).
    type: list
    elements: str
    default: []
  crl:
    description: The zone's CRLs, PEM, one after the other (the C(crl) that M(trustzone.pki.zone_root) returns).
    type: str
    default: ""
  url:
    description:
      - The zone's base URL (C(trustzone_ca_publish_url)). Given, it is checked (http or https,
        a host, an optional plain path, no query or fragment; a bad one fails naming the
        variable and the fix, before anything is written) and returned as RV(url), RV(host),
        RV(port) and RV(path), for the web server's configuration.
    type: str
  owner:
    description: Owner of the directory and files.
    type: str
    default: root
  group:
    description: Group of the directory and files.
    type: str
    default: root
attributes:
  check_mode:
    description: Reports what would be written and removed; writes nothing.
    support: full
requirements:
  - cryptography >= 3.4 on the host
"""

EXAMPLES = r"""
- name: Publish the zone's CA certificates and CRLs
  trustzone.pki.publish:
    dir: /var/www/trustzone/prod
    certificates: "{{ hostvars[groups['trustzone_ca'][0]].trustzone_ca_root.roots
                      + [hostvars[groups['trustzone_ca'][0]].trustzone_ca_root.issuer] }}"
    crl: "{{ hostvars[groups['trustzone_ca'][0]].trustzone_ca_root.crl }}"
"""

RETURN = r"""
files:
  description: The names published (sorted).
  returned: always
  type: list
  elements: str
written:
  description: The names written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
removed:
  description: The names removed (or that would be, in check mode).
  returned: always
  type: list
  elements: str
url:
  description: The checked base URL, without a trailing C(/).
  returned: when O(url) is given
  type: str
host:
  description: The base URL's host name or address (what the web server's C(server_name) is).
  returned: when O(url) is given
  type: str
port:
  description: The base URL's port (80 or 443 when it names none).
  returned: when O(url) is given
  type: int
path:
  description: The base URL's path (C(/) when it has none), where O(dir) is served.
  returned: when O(url) is given
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _publish
from ansible_collections.trustzone.pki.plugins.module_utils._runner import run_module

MODE = 0o644


def run(module):
    params = module.params
    directory, check = params["dir"], module.check_mode
    where = {}
    if params["url"] is not None:
        where = _publish.url_parts(_publish.check_url(params["url"]))
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    certs = [C.load_certificate(pem, path="certificates[%d]" % i)
             for i, pem in enumerate(params["certificates"]) if pem and pem.strip()]
    crls = C.load_crls(params["crl"], path="crl") if params["crl"].strip() else []
    wanted = _publish.publication(certs, crls)
    changed = _fs.ensure_dir(directory, 0o755, uid, gid, check_mode=check)
    present = {}
    for name in _fs.list_dir(directory):
        path = os.path.join(directory, name)
        if name in wanted or _publish.is_published_name(name):
            state = _fs.file_state(path)
            same_meta = state.get("mode") == MODE and (state.get("uid"), state.get("gid")) == (
                uid, gid)
            present[name] = _fs.read_file(path) if same_meta else None
    write, remove = _publish.plan(wanted, present)
    if not check:
        for name in write:
            _fs.atomic_write(os.path.join(directory, name), wanted[name], MODE, uid, gid)
        for name in remove:
            _fs.remove(os.path.join(directory, name))
    return dict(where, changed=changed or bool(write or remove), files=sorted(wanted),
                written=write, removed=remove)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type="path", required=True),
            certificates=dict(type="list", elements="str", default=[]),
            crl=dict(type="str", default=""),
            url=dict(type="str"),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
        ),
        supports_check_mode=True,
    )
    run_module(module, run)


if __name__ == "__main__":
    main()
