"""Storage at the edge: the content-addressed blob store, the keystore and the ledger."""
