//! End-to-end tests, fixtures and snapshot tests live under `tests/`.
