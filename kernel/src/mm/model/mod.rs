//! Host-side, hardware-faithful TLB model (see mechanisms.md section 10).
