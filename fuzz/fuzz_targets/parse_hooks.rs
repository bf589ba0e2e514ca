//! `parse_hooks` on arbitrary text: it never panics; what it accepts serializes to the API form
//! and reads back to the same hooks; every diagnostic names a path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linq_hooks_model::{Hook, parse_hooks};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_hooks(text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                assert!(
                    !warning.path().is_empty(),
                    "warning without a path: {warning}"
                );
            }
            let written = serde_json::to_string(&parsed.hooks).expect("hooks always serialize");
            let again = parse_hooks(&written)
                .unwrap_or_else(|e| panic!("the API form is refused: {e}\n{written}"));
            assert_eq!(
                again.hooks, parsed.hooks,
                "round trip changed the hooks\n{written}"
            );
            // The API form drops unknown fields, so it reads back without warnings.
            assert!(again.warnings.is_empty(), "{:?}\n{written}", again.warnings);
            // Serde users read the same hooks through the same reader.
            let via_serde: Vec<Hook> = serde_json::from_str(&written)
                .unwrap_or_else(|e| panic!("serde refuses the API form: {e}\n{written}"));
            assert_eq!(via_serde, parsed.hooks);
        }
        Err(err) => {
            assert_eq!(err.is_syntax(), !err.is_invalid());
            if err.is_invalid() {
                assert!(!err.problems().is_empty(), "invalid without a problem");
            }
            for problem in err.problems() {
                assert!(
                    !problem.path().is_empty(),
                    "problem without a path: {problem}"
                );
                assert!(
                    !problem.message().is_empty(),
                    "problem without a message: {problem}"
                );
            }
            let _ = err.to_string();
        }
    }
});
