"""The pure protocol core: types, encoding, identity, policy and events. No I/O here."""
