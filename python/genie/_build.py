"""What the extension was built against. `cargo xtask` checks this equals its torch pin."""

# The torch release whose libtorch the extension links to (tch 0.24 needs exactly this one).
TORCH_VERSION = "2.11.0"
