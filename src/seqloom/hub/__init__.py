"""Python hub interfaces: from_pretrained and friends."""
