//! Codegen: a placed SRG program becomes per-device execution plans (Recv/Exec/Send/Free).
//! Built by the placement issue.
