//! Delta transfer: the block-size rule, the sender-side matcher and the
//! receiver-side patcher.
