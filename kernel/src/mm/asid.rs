//! ASID generation allocator (see mechanisms.md section 1).
