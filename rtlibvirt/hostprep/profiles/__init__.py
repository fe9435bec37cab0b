"""Profiles of host-prep's engine: the host's (host.yaml) and the guest's (vm.yaml)."""
