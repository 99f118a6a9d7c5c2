//! The test framework's own guarantees: failures are caught and reported.

use crate::ktest;
use crate::test::{catch, Outcome};

ktest!(
    fn panic_is_caught_as_failure() {
        let out = catch(|| panic!("deliberate"));
        match out {
            Outcome::Failed(msg) => assert!(msg.contains("deliberate"), "message: {msg}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(catch(|| {}), Outcome::Passed);
    }
);

ktest!(
    fn exception_is_caught_and_decoded() {
        // An access to an unmapped upper-half address: a translation fault.
        let out = catch(|| {
            // SAFETY: deliberately faulting read; the fault is caught by `catch`.
            let v = unsafe { core::ptr::read_volatile(0xffff_4000_0000_0000 as *const u64) };
            core::hint::black_box(v);
        });
        match out {
            Outcome::Failed(msg) => {
                assert!(msg.contains("EC 0x25"), "data abort from EL1 expected: {msg}");
                assert!(msg.contains("translation fault"), "{msg}");
                assert!(msg.contains("FAR 0xffff400000000000"), "{msg}");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
);

ktest!(
    fn skip_is_reported() {
        let out = catch(|| crate::test::skip("not applicable"));
        assert_eq!(out, Outcome::Skipped("not applicable".into()));
    }
);
