"""``rtlibvirt probe``: the latency a VM really gets, measured in a guest with its tuning.

image (Debian packages -> kernel + initramfs, cached), guest (the init, the guest
command line, cyclictest's options), domain (the probe and untuned domain XML),
run (the configurations, measured in turn), results (cyclictest's output ->
figures), report (table, text histogram, JSON), plot (SVG).
"""
