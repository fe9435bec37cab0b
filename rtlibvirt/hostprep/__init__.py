"""``rtlibvirt host-prep``: the host's boot-time real-time configuration.

One module per thing managed, each turning a :class:`~rtlibvirt.config.host.HostSpec` and the
host's facts into declarative changes (files, runtime values, services,
commands): ``cmdline`` (kernel arguments), ``grub`` (how they reach the boot
loader), ``systemd`` (CPUAffinity drop-in and the boot-time unit),
``services``, ``modprobe``, ``sysctl`` and ``runtime`` (values that do not
survive a reboot), listed once in :data:`.plan.MODULES`. ``plan`` asks each
module for its changes and compares them with the host, ``apply`` makes them
(journaling each one first, through one ``journal``), ``verify`` checks the
live host, ``revert`` undoes everything from the journal, and ``report``
turns plans and results into text.
"""
