//! Passes over the SRG: cleanup, egg pattern tagging, semantic annotation, cost hints and
//! placement. Built by the passes and placement issues; the IR's verifier runs after each pass.
