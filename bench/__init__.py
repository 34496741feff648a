"""``make bench``: what the router costs compared with talking to the upstream directly.

Every scenario measures direct and routed traffic side by side in the same run, so the
report is about ratios and added milliseconds, never a lone absolute number.
"""
