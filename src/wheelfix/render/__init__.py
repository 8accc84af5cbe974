"""Emitters: turn analysis and check results into text, JSON or GitHub annotations. Pure functions that
return strings or plain data; the CLI decides where they go."""
