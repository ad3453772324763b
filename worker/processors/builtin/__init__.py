"""The built-in processors, one file each. They keep read models in the ledger's SQL database,
written through ctx.transaction so they commit atomically with the ledger's done marks."""
