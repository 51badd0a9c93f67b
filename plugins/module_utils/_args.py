# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""Argument-spec fragments the modules compose, each matching a doc fragment.

Fragment (options) -> doc fragment in plugins/doc_fragments/:

- ``ZONE`` (zone, required) -> ``trustzone.pki.zone``
- ``NODE_DIR`` (dir, the zone's directory on a node) -> ``trustzone.pki.zone.node_dir``
- ``CA_DIR`` (dir, the zone's CA directory) -> ``trustzone.pki.ca``
- ``CA_PASSPHRASE`` (passphrase, required, secret) -> ``trustzone.pki.ca.passphrase``
- ``OWNER_GROUP`` (owner, group; default root) -> ``trustzone.pki.files``
- ``STORE_ROOTS`` (roots, roots_path; exactly one) -> ``trustzone.pki.store``
- ``ROLE_SPEC`` (role_spec, read by the action plugin) -> ``trustzone.pki.action.role_spec``
- ``SECRETS_NODE`` (cert_path, key_path, mode) -> ``trustzone.pki.secrets``
- ``probe_bounds(timeout, retries, delay)`` (the same three options, each module's defaults)
  -> ``trustzone.pki.probe`` (the module's documentation adds the defaults)

``ZONE_NODE``, ``ZONE_CA`` and ``ZONE_CA_KEYS`` are the combinations the modules use.

``module_args(*fragments, **options)`` gives the keyword arguments of ``AnsibleModule``: the
fragments' options and constraints (``required_one_of``, ``mutually_exclusive``, ...), then the
module's own options, always check mode. A fragment is never handed out itself (a copy is), so
no module can change another's spec.
"""

from __future__ import annotations

import copy

from ansible_collections.trustzone.pki.plugins.module_utils import _layout
from ansible_collections.trustzone.pki.plugins.module_utils import _parse

ZONE = {"options": {"zone": {"type": "str", "required": True}}}
NODE_DIR = {"options": {"dir": {"type": "path"}}}
CA_DIR = {"options": {"dir": {"type": "path"}}}
CA_PASSPHRASE = {"options": {"passphrase": {"type": "str", "required": True, "no_log": True}}}
OWNER_GROUP = {"options": {"owner": {"type": "str", "default": "root"},
                           "group": {"type": "str", "default": "root"}}}
ROLE_SPEC = {"options": {"role_spec": {"type": "path"}}}
# the node's secrets identity and the mode of what the secrets modules write
SECRETS_NODE = {"options": {"cert_path": {"type": "path"},
                            "key_path": {"type": "path", "no_log": False},
                            "mode": {"type": "str", "default": "0600"}}}
# what a new root is made of (zone_root; its action plugin makes offline roots from them)
NEW_ROOT = {"options": {
    "key_type": {"type": "str", "default": "ec", "choices": ["ec", "rsa", "ed25519"]},
    "key_curve": {"type": "str", "default": "secp384r1", "choices": ["secp256r1", "secp384r1"]},
    "key_size": {"type": "int", "default": 4096, "choices": [2048, 3072, 4096]},
    "lifetime": {"type": "str", "default": "3650d"},
    "common_name": {"type": "str"},
}}
# the zone's PKCS#11 token for its CA keys (off without pkcs11_token)
PKCS11 = {"options": {
    "pkcs11_module": {"type": "path", "default": "/usr/lib/softhsm/libsofthsm2.so"},
    "pkcs11_token": {"type": "str", "no_log": False},  # a label, not a secret
    "pkcs11_pin": {"type": "str", "no_log": True},
    "pkcs11_keys": {"type": "list", "elements": "str", "default": ["root", "intermediate"],
                    "choices": ["root", "intermediate"]},
}, "required_together": [("pkcs11_token", "pkcs11_pin")]}
STORE_ROOTS = {
    "options": {"roots": {"type": "list", "elements": "str"}, "roots_path": {"type": "path"}},
    "required_one_of": [("roots", "roots_path")],
    "mutually_exclusive": [("roots", "roots_path")],
}

# the fragments of a module on the zone's CA directory
ZONE_CA = (ZONE, CA_DIR)
# ... and that opens the CA keys
ZONE_CA_KEYS = (ZONE, CA_DIR, CA_PASSPHRASE)
# a module on a node's zone directory
ZONE_NODE = (ZONE, NODE_DIR)


def probe_bounds(timeout, retries, delay):
    """The fragment of a module that probes: ``timeout`` (seconds per attempt), ``retries``
    (further attempts), ``delay`` (seconds between attempts), with that module's defaults."""
    return {"options": {"timeout": {"type": "float", "default": timeout},
                        "retries": {"type": "int", "default": retries},
                        "delay": {"type": "float", "default": delay}}}


_RULES = ("mutually_exclusive", "required_one_of", "required_together", "required_if",
          "required_by")


def module_args(*fragments, **options):
    """``AnsibleModule`` keyword arguments: ``argument_spec`` made of the fragments' options,
    then ``options`` (a module's own; a name given twice is a mistake and raises), the
    fragments' constraints, and ``supports_check_mode=True``. A fragment may be a tuple of
    fragments. Constraints of the module's own go in ``options`` under their own key
    (``mutually_exclusive=[...]``): they are added to the fragments'."""
    flat = []
    for fragment in fragments:
        flat.extend(fragment if isinstance(fragment, tuple) else (fragment,))
    spec = {}
    kwargs = {"supports_check_mode": True}
    own_rules = {rule: options.pop(rule) for rule in _RULES if rule in options}
    for part in flat + [{"options": options}]:
        for name, value in part["options"].items():
            if name in spec:
                raise ValueError("option %s given twice" % name)
            spec[name] = copy.deepcopy(value)
        for rule in _RULES:
            if rule in part:
                kwargs.setdefault(rule, []).extend(copy.deepcopy(part[rule]))
    for rule, value in own_rules.items():
        kwargs.setdefault(rule, []).extend(value)
    kwargs["argument_spec"] = spec
    return kwargs


def zone_and_ca_dir(params):
    """``(zone, CA directory)`` of a module built with ``ZONE_CA``: the zone name checked,
    the directory given or the default."""
    zone = _parse.validate_name(params["zone"], "zone name")
    return zone, _layout.ca_dir(zone, params["dir"])


def zone_and_node_dir(params):
    """``(zone, node directory)`` of a module built with ``ZONE_NODE``."""
    zone = _parse.validate_name(params["zone"], "zone name")
    return zone, _layout.node_dir(zone, params["dir"])
