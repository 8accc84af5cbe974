"""Mach-O: the reader (thin and fat), the load-command editor and the ad-hoc code signer."""
