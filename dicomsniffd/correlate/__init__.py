"""``dicomsniffd correlate NEAR FAR``: two capture points of the same traffic compared.

points    one capture read into connections: distinct segments per direction (capped)
matching  which connection is which at the other point, by ISN and first data (NAT)
clock     the offset between the two captures' clocks, and which point is upstream
diff      per connection and direction: lost, added, resets, options, payload, delay
meaning   the association and DIMSE message of a segment (the normal pipeline's events)
run       correlate_files: all of the above into one JSON-ready dict
text      the text output; html: the --report page; command: the subcommand's flow
"""

from dicomsniffd.correlate.run import NothingInCommon, correlate_files

__all__ = ("NothingInCommon", "correlate_files")
