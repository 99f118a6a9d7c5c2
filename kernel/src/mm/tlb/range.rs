//! FEAT_TLBIRANGE operand encoding.
