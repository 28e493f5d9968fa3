"""PHI-scrubbed evidence: pcaps of the associations worth showing a vendor, with every
data-set byte and every user-identity value overwritten in place (DESIGN §5)."""
