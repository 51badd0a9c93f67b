"""Make ``ansible_collections.trustzone.pki`` importable from this checkout.

The plugins import each other by their full collection name. Rather than relying on the
``.collections`` symlink farm (made by scripts/bootstrap, absent on a fresh checkout) or on
Ansible's collection loader, a throw-away directory ``<tmp>/ansible_collections/trustzone/pki``
is linked to the repository root and ``<tmp>`` is put first on ``sys.path``. ``ansible_collections``
and ``ansible_collections.trustzone`` have no ``__init__.py``, so they are namespace packages
and merge with the ``ansible_collections`` that PyPI's ``ansible`` package installs.

Nothing here imports Ansible: tests/unit/plugins/module_utils needs only pytest and
cryptography (so it can run against Debian 12's cryptography 38.0.4).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _link_collection():
    top = tempfile.mkdtemp(prefix="trustzone-unit-")
    namespace = os.path.join(top, "ansible_collections", "trustzone")
    os.makedirs(namespace)
    os.symlink(REPO_ROOT, os.path.join(namespace, "pki"))
    atexit.register(shutil.rmtree, top, True)
    sys.path.insert(0, top)
    # a previously imported, differently located copy must not win
    for name in [m for m in sys.modules if m.startswith("ansible_collections.trustzone")]:
        del sys.modules[name]
    return top


if __name__.startswith("ansible_collections."):
    # `ansible-test units` (its collection loader) already imports this checkout as
    # ansible_collections.trustzone.pki; a second link would shadow it and drop this module.
    COLLECTION_TOP = None
else:
    COLLECTION_TOP = _link_collection()
