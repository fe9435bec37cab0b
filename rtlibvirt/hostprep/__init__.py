"""``rtlibvirt host-prep``: the host's boot-time real-time configuration.

One module per thing managed, each turning a :class:`~.spec.HostSpec` and the
host's facts into declarative changes (files, runtime values, services,
commands): ``cmdline`` (kernel arguments), ``grub`` (how they reach the boot
loader), ``systemd`` (CPUAffinity drop-in and the boot-time unit),
``services``, ``modprobe``, ``sysctl`` and ``runtime`` (values that do not
survive a reboot). ``engine`` plans, applies, verifies and reverts them all
through one ``journal``, so that journaling is written once, not per module.
"""
