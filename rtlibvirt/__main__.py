"""``python -m rtlibvirt``: the same as the ``rtlibvirt`` command."""

from rtlibvirt.cli import main

main()
