"""Repair: index the libraries to point at, plan the edits, apply and verify them."""
