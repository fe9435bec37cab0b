"""Rtlibvirt's Cockpit page (data only: manifest, page, script, styles)."""
