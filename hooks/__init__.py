"""The libvirt hook entry points shipped with rtlibvirt (package data)."""
