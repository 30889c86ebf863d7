"""Model families: one folder each (config, builder, interop, hub)."""
