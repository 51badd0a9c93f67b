# -*- coding: utf-8 -*-
# Copyright: trustzone.pki contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# NOTE: THIS IS PRIVATE TO THE trustzone.pki COLLECTION. It may change without notice.
"""The last lines every module of the collection shares.

The one place in module_utils that talks to Ansible, and only through the module object it
is handed: a module builds its AnsibleModule (argument spec, check mode) and calls
``run_module(module, run)``, where ``run(module)`` returns the result dict.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.trustzone.pki.plugins.module_utils import _crypto as C
from ansible_collections.trustzone.pki.plugins.module_utils import _sources
from ansible_collections.trustzone.pki.plugins.module_utils._errors import TrustzoneError


def listed_diff(lines, header):
    """A module's diff that lists what it changes (or would), one line each: ``lines``."""
    return {"before": "", "after": "".join(lines), "after_header": header}


def run_module(module, run):
    """Exit ``module`` with ``run(module)``'s result.

    Without the cryptography library the module fails saying so; a TrustzoneError becomes a
    single-line failure (what, where, the fix), never a traceback. In check mode, a store
    whose source files are not there yet (a node joining in this same run) is a change, not
    a failure.
    """
    if not C.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"),
                         exception=str(C.CRYPTOGRAPHY_IMPORT_ERROR))
        return
    try:
        result = run(module)
    except _sources.MissingSource as exc:
        if not module.check_mode:
            module.fail_json(msg=str(exc))
            return
        result = _sources.check_mode_result(exc)
    except TrustzoneError as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(**result)
