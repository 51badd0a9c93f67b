"""Shared harness for the unit tests that call a module's ``run()``: its defaults, a stand-in
for AnsibleModule, and the crash harness (a crash before the k-th filesystem step, by raising
or by ``os._exit`` in a forked child).

Import it by its collection name (works in every pytest import mode):
``from ansible_collections.trustzone.pki.tests.unit.plugins.modules import tz_modulelib``.
Importing it needs only pytest; ``module_defaults`` and ``zone_root_runner`` need Ansible.
"""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

EXIT_CRASHED = 17  # the exit code of a child killed at its crash point


class _Captured(Exception):
    pass


def module_defaults(module):
    """``{option: default}`` of ``module``'s argument spec, as its ``main()`` declares it."""
    spec = {}

    class Capture:
        def __init__(self, argument_spec, **_kwargs):
            spec.update(argument_spec)
            raise _Captured()

    real = module.AnsibleModule
    module.AnsibleModule = Capture
    try:
        with pytest.raises(_Captured):
            module.main()
    finally:
        module.AnsibleModule = real
    return {name: option.get("default") for name, option in spec.items()}


class FakeModule:
    """What a module's ``run()`` uses of AnsibleModule: params, check mode, diff, warnings."""

    def __init__(self, params, check_mode=False, diff=False):
        self.params, self.check_mode, self._diff, self.warnings = params, check_mode, diff, []

    def warn(self, text):
        self.warnings.append(text)


def module_runner(diff=False):
    """``call(module, check_mode=False, **params)`` -> ``module.run``'s result with the
    module's own defaults under ``params`` (each module's read once)."""
    cache = {}

    def call(module, check_mode=False, **params):
        if module not in cache:
            cache[module] = module_defaults(module)
        return module.run(FakeModule(dict(cache[module], **params), check_mode, diff))
    return call


def zone_root_runner(**fixed):
    """``run(dir, check=False, **params)`` -> zone_root.run's result for zone ``prod`` in
    ``dir``: the module's own defaults, then ``fixed``, then ``params``."""
    pytest.importorskip("ansible.module_utils.basic")
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.trustzone.pki.plugins.modules import zone_root

    call = module_runner()

    def run(path, check=False, **params):
        merged = dict(zone="prod", dir=path, **fixed)
        merged.update(params)
        return call(zone_root, check, **merged)
    return run


def counting_fs(fs_class, steps, at, how, crash, counter, replace=None):
    """A subclass of ``fs_class`` whose methods named in ``steps`` count their calls in
    ``counter["steps"]`` and crash before call number ``at``: ``os._exit(17)`` when ``how``
    is ``"exit"``, else by raising ``crash``. ``replace`` maps a step name to the function
    that does that step instead of ``fs_class``'s own."""
    class CountingFs(fs_class):
        pass

    for name in steps:
        real = (replace or {}).get(name) or getattr(fs_class, name)

        def step(self, *args, _real=real, _name=name):
            counter["steps"] += 1
            if counter["steps"] == at:
                if how == "exit":
                    os._exit(EXIT_CRASHED)
                raise crash("crashed before step %d (%s %s)" % (at, _name, args[0]))
            return _real(self, *args)

        setattr(CountingFs, name, step)
    return CountingFs


def crashed(run, how, crash, what):
    """Run ``run()`` once, its crash point already armed; True if it crashed there.

    With ``how == "raise"`` it runs here and a ``crash`` exception is the crash; otherwise
    it runs in a forked child, where exit 17 is the crash and exit 0 a run to its end (any
    other failure fails the test, naming ``what``)."""
    if how == "raise":
        try:
            run()
        except crash:
            return True
        return False
    pid = os.fork()
    if pid == 0:  # the child: killed at the crash point, or runs to its end
        try:
            run()
            code = 0
        except BaseException:  # noqa: BLE001 - any failure is a test failure
            code = 3
        os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, EXIT_CRASHED), "%s failed in the child (exit %d)" % (what, code)
    return code == EXIT_CRASHED


def walk(path):
    """``{relative path: (lstat, sha256 of a regular file's bytes or None)}`` of everything
    under ``path``."""
    out = {}
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(full, path)] = (st, digest)
    return out
