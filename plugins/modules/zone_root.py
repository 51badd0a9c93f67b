#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zone_root
short_description: Ensure a trust zone's root CA exists and is valid on the CA host
version_added: 0.1.0
description:
  - Creates the zone's root CA key and self-signed certificate on the CA host when they do not
    exist, and checks them on every later run (key decrypts, key matches certificate, root not
    expired).
  - The private key is stored as PKCS#8, encrypted with O(passphrase), in a directory of mode
    V(0700); the key file is V(0600). The key never leaves the CA host.
  - In check mode a missing root is generated in memory only, so that later tasks can plan
    against it; nothing is written.
author: trustzone.pki maintainers
options:
  zone:
    description: Name of the trust zone (V(a-z), V(0-9), V(-), V(_); at most 32 characters).
    type: str
    required: true
  dir:
    description: Directory holding the zone's CA state. Defaults to C(/var/lib/trustzone/<zone>).
    type: path
  passphrase:
    description:
      - Passphrase that encrypts the root key at rest. Keep it in Ansible Vault.
    type: str
    required: true
  key_type:
    description: Key algorithm of a new root.
    type: str
    choices: [ec, rsa, ed25519]
    default: ec
  key_curve:
    description: Curve of a new EC root key.
    type: str
    choices: [secp256r1, secp384r1]
    default: secp384r1
  key_size:
    description: Size of a new RSA root key.
    type: int
    choices: [2048, 3072, 4096]
    default: 4096
  lifetime:
    description: Validity of a new root, as a duration such as V(3650d).
    type: str
    default: 3650d
  common_name:
    description: Common name of a new root. Defaults to C(trustzone <zone> root CA).
    type: str
  owner:
    description: Owner of the CA directory and files.
    type: str
    default: root
  group:
    description: Group of the CA directory and files.
    type: str
    default: root
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
requirements:
  - cryptography >= 3.4 on the CA host
"""

EXAMPLES = r"""
- name: Ensure the zone root exists
  trustzone.pki.zone_root:
    zone: prod
    passphrase: "{{ vault_trustzone_ca_passphrase }}"
  register: trustzone_ca_root
"""

RETURN = r"""
roots:
  description: PEM certificates of the zone's current roots (what nodes must trust).
  returned: success
  type: list
  elements: str
root:
  description: Facts about the current root.
  returned: success
  type: dict
  contains:
    fingerprint:
      description: SHA-256 fingerprint, lower-case hex.
      type: str
    subject:
      description: Subject in RFC 4514 form.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_left:
      description: Whole days of validity left.
      type: int
dir:
  description: The CA directory.
  returned: success
  type: str
zone:
  description: The zone name.
  returned: success
  type: str
created:
  description: Whether a new root was made (or would be, in check mode).
  returned: success
  type: bool
"""

import datetime
import os
import secrets

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _fs
from ansible_collections.trustzone.pki.plugins.module_utils import _policy as P
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError

ROOT_KEY = "root.key"
ROOT_CERT = "root.crt"


def root_facts(cert, now):
    end = C.not_after(cert)
    return {
        "fingerprint": C.fingerprint(cert),
        "subject": C.subject_text(cert),
        "not_after": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "days_left": int((end - now).total_seconds() // 86400),
    }


def new_root(params, zone, now):
    spec = C.normalize_key_spec(params["key_type"], params["key_size"], params["key_curve"])
    key = C.generate_key(spec)
    cn = params["common_name"] or "trustzone %s root CA" % zone
    subject = C.zone_name_attributes(zone, cn, unique=secrets.token_hex(8))
    lifetime = P.parse_duration(params["lifetime"], "lifetime")
    cert = C.build_ca_certificate(key, subject, now - datetime.timedelta(minutes=5),
                                  now + datetime.timedelta(seconds=lifetime))
    return key, cert


def load_existing(ca_dir, passphrase):
    key_path = os.path.join(ca_dir, ROOT_KEY)
    cert_path = os.path.join(ca_dir, ROOT_CERT)
    key_data = _fs.read_file(key_path)
    cert_data = _fs.read_file(cert_path)
    if key_data is None and cert_data is None:
        return None, None
    if key_data is None:
        raise TrustzoneError("the root certificate exists but its key is missing", key_path,
                             fix="restore the CA directory from a backup (playbooks/restore.yml);"
                                 " never delete the certificate to start over unless you mean "
                                 "to replace the whole zone")
    if cert_data is None:
        raise TrustzoneError("the root key exists but its certificate is missing", cert_path,
                             fix="restore the CA directory from a backup (playbooks/restore.yml)")
    key = C.load_private_key(key_data, passphrase, path=key_path)
    cert = C.load_certificate(cert_data, path=cert_path)
    if not C.same_public_key(key, cert):
        raise TrustzoneError("the root certificate does not belong to the root key", cert_path,
                             fix="restore the matching pair from a backup")
    return key, cert


def run(module):
    params = module.params
    zone = P.validate_name(params["zone"], "zone name")
    ca_dir = params["dir"] or "/var/lib/trustzone/%s" % zone
    now = datetime.datetime.now(datetime.timezone.utc)
    uid, gid = _fs.resolve_owner(params["owner"], params["group"])
    changed = _fs.ensure_dir(ca_dir, 0o700, uid, gid, check_mode=module.check_mode)
    key, cert = load_existing(ca_dir, params["passphrase"])
    created = False
    if cert is None:
        key, cert = new_root(params, zone, now)
        created = changed = True
        if not module.check_mode:
            _fs.atomic_write(os.path.join(ca_dir, ROOT_CERT), C.certificate_pem(cert), 0o644,
                             uid, gid)
            _fs.atomic_write(os.path.join(ca_dir, ROOT_KEY),
                             C.private_key_pem(key, params["passphrase"]), 0o600, uid, gid)
    else:
        for name, mode in ((ROOT_KEY, 0o600), (ROOT_CERT, 0o644)):
            st = _fs.file_state(os.path.join(ca_dir, name))
            if (st["mode"], st["uid"], st["gid"]) != (mode, uid, gid):
                changed = True
                if not module.check_mode:
                    os.chown(os.path.join(ca_dir, name), uid, gid)
                    os.chmod(os.path.join(ca_dir, name), mode)
    if C.not_after(cert) <= now:
        raise TrustzoneError("the zone root expired on %s" % C.not_after(cert).date(),
                             os.path.join(ca_dir, ROOT_CERT),
                             fix="rotate the root with playbooks/rotate_root.yml")
    facts = root_facts(cert, now)
    result = {
        "changed": changed,
        "created": created,
        "zone": zone,
        "dir": ca_dir,
        "roots": [C.certificate_pem(cert)],
        "root": facts,
    }
    if module._diff:
        result["diff"] = {"before": "" if created else "root %s\n" % facts["fingerprint"],
                          "after": "root %s\n" % facts["fingerprint"]}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            dir=dict(type="path"),
            passphrase=dict(type="str", required=True, no_log=True),
            key_type=dict(type="str", default="ec", choices=["ec", "rsa", "ed25519"]),
            key_curve=dict(type="str", default="secp384r1", choices=["secp256r1", "secp384r1"]),
            key_size=dict(type="int", default=4096, choices=[2048, 3072, 4096]),
            lifetime=dict(type="str", default="3650d"),
            common_name=dict(type="str"),
            owner=dict(type="str", default="root"),
            group=dict(type="str", default="root"),
        ),
        supports_check_mode=True,
    )
    if not C.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"),
                         exception=str(C.CRYPTOGRAPHY_IMPORT_ERROR))
    try:
        module.exit_json(**run(module))
    except TrustzoneError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
