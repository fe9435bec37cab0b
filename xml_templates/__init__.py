"""Jinja2 templates of the libvirt domain XML (package data)."""
