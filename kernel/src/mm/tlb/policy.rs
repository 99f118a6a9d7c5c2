//! Flush policy: turns a flush request into TLBI operations.
