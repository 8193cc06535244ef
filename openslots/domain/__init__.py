"""Pure domain rules of Open Slots: statuses, contact normalisation, matching. No I/O."""
