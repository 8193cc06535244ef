"""HL7 v2: a fast extracting parser (hl7apy is the reference), a message store, an MLLP listener."""
