"""rtlibvirt: real-time KVM virtual machines with libvirt, from short YAML files."""

__version__ = "0.1.0"
