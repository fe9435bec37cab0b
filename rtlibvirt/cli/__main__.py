"""``python -m rtlibvirt.cli``: the same as the ``rtlibvirt`` command."""

from rtlibvirt.cli import main

main()
